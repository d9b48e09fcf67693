// A faktory-worker (npm) Worker driven by the compatibility tests.
// Usage: node worker.js '<json config>'
//   config: {url, wid, queues, concurrency, beatInterval (seconds), timeout (seconds),
//            tlsOptions (for Node's tls.connect, e.g. {"ca": "<PEM>"}: TLS to the server)}
// Prints one JSON object per line on stdout:
//   {"event":"ready","wid":...}                after the first heartbeat (work() resolved)
//   {"event":"job","jobtype","jid","args","queue","custom","at","retry"}  when a job function runs
//   {"event":"quiet"} / {"event":"stop"}       when the library quiets / stops the worker
//   {"event":"fail","jid","message"}           the library's "fail" event (after FAIL was sent)
//   {"event":"error","message"}                the library's "error" event
//   {"event":"exit","code"}                    on process exit
// Job types: NodeOk (succeeds), NodeFail (throws an Error whose .code is "NodeBoom").
"use strict";
const { Worker } = require("faktory-worker");

const cfg = JSON.parse(process.argv[2] || "{}");
const out = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");

const worker = new Worker({
  url: cfg.url,
  wid: cfg.wid,
  queues: cfg.queues || ["default"],
  concurrency: cfg.concurrency || 2,
  beatInterval: cfg.beatInterval || 15,
  timeout: cfg.timeout || 8,
  labels: ["node-compat"],
  tlsOptions: cfg.tlsOptions,
});

const report = (ctx) => {
  const { job } = ctx;
  out({ event: "job", jobtype: job.jobtype, jid: job.jid, args: job.args, queue: job.queue,
        custom: job.custom, at: job.at, retry: job.retry, failure: job.failure });
};
worker.register("NodeOk", () => async (ctx) => { report(ctx); });
worker.register("NodeFail", () => async (ctx) => {
  report(ctx);
  const e = new Error(`node boom ${ctx.job.args[0]}`);
  e.code = "NodeBoom";
  throw e;
});

// Observe (not change) the library's own quiet/stop handling.
const quiet = worker.quiet.bind(worker);
worker.quiet = () => { if (!worker.quieted) out({ event: "quiet" }); quiet(); };
const stop = worker.stop.bind(worker);
worker.stop = async () => { out({ event: "stop" }); return stop(); };
worker.on("fail", ({ job, error }) => out({ event: "fail", jid: job.jid, message: error.message }));
worker.on("error", (e) => out({ event: "error", message: String(e && e.message) }));
process.on("exit", (code) => out({ event: "exit", code }));

worker.work().then(
  () => out({ event: "ready", wid: worker.wid }),
  (e) => { out({ event: "error", message: String(e && e.message) }); process.exit(2); },
);
