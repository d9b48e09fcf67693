// The faktory-worker (npm) Client driven by the compatibility tests.
// Usage: node client.js '<json>'   with {url, tlsOptions?, ops: [...]} (tlsOptions: passed to
// Node's tls.connect, e.g. {"ca": "<PEM>"}: TLS to the server); prints one JSON result line per op:
//   {"ok":true,"result":...} or {"ok":false,"error":"..."}; the client is closed at the end.
// ops:
//   {"op":"job", "jobtype", "args", "queue"?, "retry"?, "custom"?, "atInMs"?, "jid"?}
//        -> the Job builder (client.job(...).push()); result = jid
//   {"op":"push", "job": {...}}          -> client.push(payload); result = jid
//   {"op":"pushBulk", "jobs": [...]}     -> client.pushBulk(jobs); result = rejected map
//   {"op":"mutate", "target": "retries|scheduled|dead", "cmd": "kill|requeue|discard|clear",
//    "ofType"?, "withJids"?, "matching"?}   -> client[target].ofType(..)...[cmd](); result = reply
//   {"op":"connect"}                     -> client.connect() (open + handshake + close one connection)
//   {"op":"info"}                        -> client.info()
//   {"op":"fetch", "queues": [...]}      -> client.fetch(...queues)
//   {"op":"ack", "jid"}                  -> client.ack(jid)
"use strict";
const { Client } = require("faktory-worker");

async function run(client, op) {
  switch (op.op) {
    case "job": {
      const job = client.job(op.jobtype, ...(op.args || []));
      if (op.jid) job.jid = op.jid;
      if (op.queue) job.queue = op.queue;
      if (op.retry !== undefined) job.retry = op.retry;
      if (op.custom) job.custom = op.custom;
      if (op.atInMs !== undefined) job.at = new Date(Date.now() + op.atInMs);
      return job.push();
    }
    case "push": return client.push(op.job);
    case "pushBulk": {
      const rejected = await client.pushBulk(op.jobs);
      const out = {};
      for (const jid of Object.keys(rejected)) out[jid] = rejected[jid].reason;
      return out;
    }
    case "mutate": {
      let m = client[op.target];
      if (op.ofType) m = m.ofType(op.ofType);
      if (op.withJids) m = m.withJids(op.withJids);
      if (op.matching) m = m.matching(op.matching);
      return m[op.cmd]();
    }
    case "connect": await client.connect(); return "connected";
    case "info": return client.info();
    case "fetch": return client.fetch(...op.queues);
    case "ack": return client.ack(op.jid);
    default: throw new Error(`unknown op ${op.op}`);
  }
}

(async () => {
  const cfg = JSON.parse(process.argv[2]);
  const client = new Client({ url: cfg.url, tlsOptions: cfg.tlsOptions });
  let failed = false;
  try {
    for (const op of cfg.ops) {
      try {
        const result = await run(client, op);
        process.stdout.write(JSON.stringify({ ok: true, result: result === undefined ? null : result }) + "\n");
      } catch (e) {
        failed = true;
        process.stdout.write(JSON.stringify({ ok: false, error: String(e && e.message) }) + "\n");
      }
    }
  } finally {
    await client.close();
  }
  process.exitCode = failed ? 1 : 0;
})();
