"""Every Redis key name the server uses, in one place.

Faktory 1.10's layout is kept so a data directory it wrote is served as it is (one written by
Faktory 1.9 or older, with queues under their bare names, is moved to it at boot:
``faktory_fast.master.migration``):
``q:<queue>`` lists (LPUSH in, RPOP out), the ``queues`` and ``paused`` sets, the ``scheduled``,
``retries``, ``dead`` and ``working`` sorted sets and the ``processed``/``failures`` counters.

Differences, all under the ``ff:`` prefix so they never collide with Faktory's keys:

* ``working`` members are jids (Faktory stores the reservation JSON there); the reservation itself
  lives in the ``ff:res`` hash so ACK/FAIL find it in O(1) from any process. Boot migrates
  Faktory's format (``faktory_fast.master.migration``).
* Jobs whose priority is not 5 live in ``q:<queue>:p<N>`` beside ``q:<queue>`` (``:`` cannot occur
  in a queue name, so these never clash), and their queue is listed in ``ff:prioq``.
* A stored record the background tasks (or a FAIL) cannot use, e.g. written by hand or by an
  older server, is set aside: a job object with a jid goes to ``dead`` with a failure of errtype
  ``InvalidJob`` saying what is wrong; anything else is kept as it was in the ``ff:bad`` stream
  (entries with fields ``source``, ``reason``, ``at`` and ``record``, plus ``jid`` for a
  reservation): ``XRANGE ff:bad - +`` lists them; ``DEL ff:bad`` once they are dealt with.
"""
import zlib

#: On a Redis Cluster every key name below starts with this hash tag, so that all of them are
#: in one slot and every function call (which touches several) runs on one primary. On a single
#: Redis there is no tag: Faktory's layout, byte for byte. The names here and in Python code are
#: the untagged ones: a store adds its tag where keys leave for Redis (``fcall.with_tag``), and
#: the Lua library takes the tag of the keys each call names (``store.library_source``).
CLUSTER_TAG = "{ff}"


def layout_tag(cluster: bool) -> str:
    """The tag of the key layout: ``CLUSTER_TAG`` on a Redis Cluster, none on a single Redis."""
    return CLUSTER_TAG if cluster else ""


#: The partition that holds what is not a queue's: the registry of processes and workers,
#: batches, tracking, cron and job metrics (with the queues that fall to it).
HOME = 0


def partition_tags(count: int) -> list[str]:
    """The hash tags of ``count`` partitions of a Redis Cluster (``redis+cluster://...?
    partitions=N``), each a whole key layout for the queues that fall to it (``partition_of``):
    ``CLUSTER_TAG`` first (the home partition; the only one by default), then for each other
    the first of ``{ffK}``, ``{ffK.1}``, ``{ffK.2}``... whose slot is in a range of 16384 /
    ``count`` slots that no earlier tag has. A cluster whose slots are split in equal ranges
    (as ``redis-cli --cluster create`` splits them) over ``count`` primaries then has one
    partition on each."""
    from redis.crc import key_slot

    width = 16384 / count
    tags = [CLUSTER_TAG]
    taken = {int(key_slot(CLUSTER_TAG.encode()) // width)}
    for k in range(1, count):
        for i in range(1_000_000):
            tag = f"{{ff{k}}}" if i == 0 else f"{{ff{k}.{i}}}"
            part = int(key_slot(tag.encode()) // width)
            if part not in taken:
                break
        taken.add(part)
        tags.append(tag)
    return tags


def partition_of(queue: str, count: int) -> int:
    """The partition of ``count`` that holds queue ``queue`` (its lists, its scheduled, retried,
    dead and reserved jobs): CRC-32 of its name, modulo ``count``."""
    return zlib.crc32(queue.encode()) % count if count > 1 else HOME


QUEUES = "queues"
PAUSED = "paused"
SCHEDULED = "scheduled"
RETRIES = "retries"
DEAD = "dead"
WORKING = "working"
PROCESSED = "processed"
FAILURES = "failures"
#: Faktory's data-format version: 1 since 1.10 moved queues from ``<queue>`` to ``q:<queue>``.
DATA_VERSION = "v"
CURRENT_DATA_VERSION = 1

#: Sorted sets a job can rest in, as named by MUTATE and the web UI.
SORTED_SETS = (SCHEDULED, RETRIES, DEAD)

RESERVATIONS = "ff:res"  # hash jid -> reservation JSON
PRIORITY_QUEUES = "ff:prioq"  # set of queues holding jobs with priority != 5
WORKER_BEATS = "ff:wids"  # zset wid -> last heartbeat (unix seconds)
QUIET_WORKERS = "ff:quiet"  # set of wids told to quiet or terminate (FETCH's fast path asks)
CONNECTIONS = "ff:conns"  # hash server-process id -> open identified connections
COMMANDS = "ff:cmds"  # hash server-process id -> commands dispatched
TASKS = "ff:tasks"  # hash "<Task>.<field>" -> number, for INFO's tasks section
RESERVATION_SEQ = "ff:rseq"  # counter giving each reservation a token
CONTROL_CHANNEL = "ff:ctl"  # pub/sub: "reap <wid>" and similar broadcasts
BAD_RECORDS = "ff:bad"  # stream of records set aside that are not jobs (see above)
# Batches and job tracking (lua/batch.lua describes them).
BATCHES = "ff:batches"  # zset bid -> created (unix seconds), for the web UI's list
BATCHES_OPEN = "ff:bopen"  # set of bids whose callbacks have not all succeeded
BATCH_STATS = "ff:bstats"  # hash: callbacks (fired)

# Enterprise features, part 2 (docs/enterprise.md): unique, expiring, throttled and cron jobs.
EXPIRED = "ff:expired"  # counter: expiring jobs discarded at FETCH
UNIQUE_NAMES = "ff:uniq-names"  # hash jid -> the name of the unique lock the job took
THROTTLES = "ff:throttles"  # hash queue -> "concurrency|worker <limit> <timeout>" (config)
THROTTLE_LAPSES = "ff:thr-lapses"  # zset throttle lock set -> the earliest a lock in it lapses
CRON_ENTRIES = "ff:cron:entries"  # hash entry id -> {"schedule", "job", "source"} (config)
CRON_LAST = "ff:cron:last"  # hash cron entry id -> "<tick unix seconds> <jid>" of its last push
CRON_SEEN = "ff:cron:seen"  # unix seconds up to which cron ticks were handled (any node)
PARTITIONS = "ff:partitions"  # the number of partitions the keys are spread over (cluster)
TABLES_BY = "ff:tables-by"  # "<node> <digest>": who last wrote ff:throttles / ff:cron:entries
# Job metrics (job_metrics.py): hashes "<queue>|<jobtype>" -> its counts (job_metrics.pack);
# the lifetime totals, and the pairs they hold.
METRICS_TOTAL = "ff:m:total"
METRICS_PAIRS = "ff:m:pairs"  # set "<queue>|<jobtype>": at most job_metrics.MAX_PAIRS


#: Prefixes (and the priority lists' suffix) of the per-item keys and channels below.
QUEUE_PREFIX = "q:"
PRIORITY_SUFFIX = ":p"
WORKER_PREFIX = "ff:w:"
WAITERS_PREFIX = "ff:wait:"
WAKE_PREFIX = "ff:wake:"
UNIQUE_PREFIX = "ff:uniq:"  # + sha1 of (jobtype, queue, args): the jid holding the lock
THROTTLE_PREFIX = "ff:thr:"  # + queue [+ ":" + wid]: zset jid -> when its lock lapses
CRON_CLAIM_PREFIX = "ff:cron:tick:"  # + entry id + ":" + tick: the node that pushed it
BATCH_PREFIX = "ff:b:"  # hash: one batch's fields and counters
BATCH_JOBS_PREFIX = "ff:bj:"  # hash: a batch's jobs, jid -> state
BATCH_KIDS_PREFIX = "ff:bk:"  # hash: a batch's child batches, bid -> state
TRACK_PREFIX = "ff:t:"  # hash: a tracked job's state, percent, desc, updated_at
METRICS_MINUTE_PREFIX = "ff:m:min:"  # + unix minute: the job metrics of that minute
METRICS_HOUR_PREFIX = "ff:m:hour:"  # + unix hour: the job metrics of that hour

#: The names the Lua library (``lua/``) builds keys and channels from: it gets them
#: from here when it is loaded (``store.library_source``), not typed a second time. Those in
#: LUA_KEY_NAMES are keys (or the start of keys) and carry the tag on a cluster.
LUA_NAMES = {
    "QUEUE_PREFIX": QUEUE_PREFIX,
    "PRIORITY_SUFFIX": PRIORITY_SUFFIX,
    "WORKER_PREFIX": WORKER_PREFIX,
    "WAITERS_PREFIX": WAITERS_PREFIX,
    "WAKE_PREFIX": WAKE_PREFIX,
    "CONTROL_CHANNEL": CONTROL_CHANNEL,
    "UNIQUE_PREFIX": UNIQUE_PREFIX,
    "UNIQUE_NAMES_KEY": UNIQUE_NAMES,
    "THROTTLE_PREFIX": THROTTLE_PREFIX,
    "THROTTLE_LAPSES_KEY": THROTTLE_LAPSES,
    "EXPIRED_KEY": EXPIRED,
    # lua/batch.lua's
    "QUEUES_KEY": QUEUES,
    "PRIORITY_QUEUES_KEY": PRIORITY_QUEUES,
    "BATCH_PREFIX": BATCH_PREFIX,
    "BATCH_JOBS_PREFIX": BATCH_JOBS_PREFIX,
    "BATCH_KIDS_PREFIX": BATCH_KIDS_PREFIX,
    "BATCHES_OPEN": BATCHES_OPEN,
    "BATCH_STATS": BATCH_STATS,
    "TRACK_PREFIX": TRACK_PREFIX,
}
LUA_KEY_NAMES = frozenset(LUA_NAMES) - {"PRIORITY_SUFFIX", "WAKE_PREFIX", "CONTROL_CHANNEL"}


def queue(name: str) -> str:
    """The list holding ``name``'s jobs of priority 5."""
    return QUEUE_PREFIX + name


def priority_queue(name: str, priority: int) -> str:
    """The list holding ``name``'s jobs of another priority."""
    return f"{QUEUE_PREFIX}{name}{PRIORITY_SUFFIX}{priority}"


def queue_list(name: str, priority: int) -> str:
    """The list holding ``name``'s jobs of ``priority`` (1-9)."""
    return queue(name) if priority == 5 else priority_queue(name, priority)


def worker(wid: str) -> str:
    """Hash describing one worker process (hostname, pid, labels, state, ...)."""
    return WORKER_PREFIX + wid


def waiters(name: str) -> str:
    """Set of server processes with a FETCH waiting on queue ``name``."""
    return WAITERS_PREFIX + name


def wake_channel(proc_id: str) -> str:
    """Pub/sub channel telling one server process that a queue it waits on got a job."""
    return WAKE_PREFIX + proc_id


def daily(counter: str, day: str) -> str:
    """``processed:YYYY-MM-DD`` / ``failures:YYYY-MM-DD``."""
    return f"{counter}:{day}"


def throttle_lock(queue: str, wid: str | None = None) -> str:
    """Zset of the throttle locks held on ``queue`` (cluster-wide), or by worker ``wid``."""
    return THROTTLE_PREFIX + queue + ("" if wid is None else ":" + wid)


def unique_lock(name: str) -> str:
    """A unique job's lock, by its name (``jobs.unique_name``): the jid holding it."""
    return UNIQUE_PREFIX + name


def cron_claim(entry: str, tick: int) -> str:
    """Set by whichever node pushes cron entry ``entry``'s job for ``tick`` (unix seconds)."""
    return f"{CRON_CLAIM_PREFIX}{entry}:{tick}"


def metrics_minute(minute: int) -> str:
    """Hash of the job metrics of one minute (unix time // 60)."""
    return f"{METRICS_MINUTE_PREFIX}{minute}"


def metrics_hour(hour: int) -> str:
    """Hash of the job metrics of one hour (unix time // 3600)."""
    return f"{METRICS_HOUR_PREFIX}{hour}"


def batch(bid: str) -> str:
    """Hash of one batch's fields and counters."""
    return BATCH_PREFIX + bid


def batch_jobs(bid: str) -> str:
    """Hash of a batch's jobs: jid -> state."""
    return BATCH_JOBS_PREFIX + bid


def batch_kids(bid: str) -> str:
    """Hash of a batch's child batches: bid -> state."""
    return BATCH_KIDS_PREFIX + bid


def tracking(jid: str) -> str:
    """Hash of a tracked job's progress."""
    return TRACK_PREFIX + jid
