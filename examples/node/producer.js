#!/usr/bin/env node
// Enqueue a JSON / JSON Lines file of products as ONE batch for the catalog-ingest workers,
// with celery-node. The message contract is docs/message-format.md; the steps below follow it.
//
//   node producer.js FILE [--batch-id ID] [--source NAME] [--wait SECONDS] [--no-sequence]
//
// Settings come from the same CATALOG_* variables as the Python side.
// Exit codes: 0 queued (or applied, unchanged, duplicate with --wait), 1 rejected,
// 2 bad input, 3 Redis unreachable or the batch failed, 4 --wait ran out.
"use strict";

const crypto = require("crypto");
const fs = require("fs");
const os = require("os");
const path = require("path");
const Redis = require("ioredis");
const celery = require("celery-node");

const TASK = "catalog.ingest_batch";
const SCHEMA_VERSION = 2;
const MAX_SEQUENCE = 2 ** 53 - 1;
const EPOCH_FACTOR = 2 ** 20;
const BATCH_ID = /^[A-Za-z0-9][A-Za-z0-9._:@/-]*$/;

// The documented script (docs/message-format.md, "The sequence"); a test checks it is the same.
// Never a plain INCR: after Redis loses its data, INCR restarts at 1, below sequences already applied.
const NEXT_SEQUENCE = `
if redis.replicate_commands then redis.replicate_commands() end
local current = tonumber(redis.call('get', KEYS[1]) or '')
local value
if current and current == math.floor(current) and current >= 0 and current < tonumber(ARGV[2]) then
    value = current + 1
else
    -- Missing (Redis lost its data) or not a safe integer (someone wrote to it): a new epoch,
    -- which is above every sequence the previous one handed out.
    local now = redis.call('time')
    value = tonumber(now[1]) * tonumber(ARGV[3]) + 1
end
local floor = tonumber(ARGV[1])
if value <= floor then value = floor + 1 end
if value > tonumber(ARGV[2]) then
    return redis.error_reply('sequence ' .. string.format('%d', value) .. ' would exceed 2^53 - 1')
end
redis.call('set', KEYS[1], string.format('%d', value))
return value
`;

class UsageError extends Error {}

function settingsFromEnv(env) {
  const redisUrl = env.CATALOG_REDIS_URL || "redis://localhost:6379/0";
  return {
    redisUrl,
    resultUrl: env.CATALOG_RESULT_URL || redisUrl,
    queue: env.CATALOG_QUEUE || "catalog-ingest",
    resultExpires: Number(env.CATALOG_RESULT_EXPIRES || 7 * 24 * 3600),
    maxItems: Number(env.CATALOG_MAX_BATCH_ITEMS || 5000),
    maxBytes: Number(env.CATALOG_MAX_BATCH_BYTES || 16 * 1024 * 1024),
  };
}

function parseArgs(argv) {
  const options = { file: null, batchId: null, source: null, wait: null, sequence: true };
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) throw new UsageError(`${arg} needs a value`);
      i += 1;
      return argv[i];
    };
    if (arg === "--batch-id") options.batchId = value();
    else if (arg === "--source") options.source = value();
    else if (arg === "--wait") options.wait = Number(value());
    else if (arg === "--no-sequence") options.sequence = false;
    else if (arg === "-h" || arg === "--help") options.help = true;
    else if (arg.startsWith("-") && arg !== "-") throw new UsageError(`unknown option ${arg}`);
    else if (options.file === null) options.file = arg;
    else throw new UsageError("one file per batch");
  }
  if (options.help) return options;
  if (options.file === null) throw new UsageError("give the file to enqueue (JSON array, JSON object or .jsonl)");
  if (options.wait !== null && !(options.wait > 0)) throw new UsageError("--wait takes a number of seconds > 0");
  return options;
}

// Same as `catalog enqueue`: a JSON array, one JSON object, or JSON Lines (blank and # lines skipped).
function readRecords(file, maxBytes) {
  let text;
  try {
    const size = fs.statSync(file).size;
    if (size > maxBytes) throw new UsageError(`${file}: ${size} bytes, over the ${maxBytes}-byte limit (CATALOG_MAX_BATCH_BYTES)`);
    text = fs.readFileSync(file, "utf8");
  } catch (error) {
    if (error instanceof UsageError) throw error;
    throw new UsageError(`${file}: cannot read it (${error.code || error.message})`);
  }
  if (file.endsWith(".jsonl")) {
    return text.split("\n").flatMap((line, index) => {
      if (!line.trim() || line.trimStart().startsWith("#")) return [];
      try {
        return [JSON.parse(line)];
      } catch (error) {
        throw new UsageError(`${file}, line ${index + 1}: not JSON (${error.message})`);
      }
    });
  }
  let parsed;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new UsageError(`${file}: not JSON (${error.message})`);
  }
  return Array.isArray(parsed) ? parsed : [parsed];
}

function checkBatch(records, batchId, settings) {
  if (records.length === 0) throw new UsageError("the file holds no records");
  if (records.length > settings.maxItems) {
    throw new UsageError(`${records.length} records, over the ${settings.maxItems}-record limit (CATALOG_MAX_BATCH_ITEMS); split the file`);
  }
  const bytes = Buffer.byteLength(JSON.stringify(records));
  if (bytes > settings.maxBytes) {
    throw new UsageError(`${bytes} bytes of JSON, over the ${settings.maxBytes}-byte limit (CATALOG_MAX_BATCH_BYTES); split the file`);
  }
  const notObject = records.findIndex((record) => record === null || typeof record !== "object" || Array.isArray(record));
  if (notObject >= 0) throw new UsageError(`record ${notObject + 1} is not a JSON object`);
  if (batchId.length > 200 || !BATCH_ID.test(batchId)) {
    throw new UsageError(`batch id ${JSON.stringify(batchId)}: 1 to 200 of A-Z a-z 0-9 . _ : @ / -, starting with a letter or digit`);
  }
}

// JSON with sorted keys, for the (informational) digest in the submission trace.
function sortedJson(value) {
  if (Array.isArray(value)) return `[${value.map(sortedJson).join(",")}]`;
  if (value !== null && typeof value === "object") {
    return `{${Object.keys(value).sort().map((key) => `${JSON.stringify(key)}:${sortedJson(value[key])}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

// Fail fast when Redis is down, instead of ioredis' endless reconnecting.
const REDIS_OPTIONS = {
  connectTimeout: 5000,
  maxRetriesPerRequest: 2,
  retryStrategy: (times) => (times > 3 ? null : 200),
};

async function enqueue(options, settings) {
  const records = readRecords(options.file, settings.maxBytes);
  const batchId = options.batchId || `batch-${crypto.randomUUID().replace(/-/g, "")}`;
  const source = options.source || path.basename(options.file);
  checkBatch(records, batchId, settings);

  const redis = new Redis(settings.redisUrl, REDIS_OPTIONS);
  redis.on("error", () => {}); // reported by the command that fails
  const client = celery.createClient(settings.redisUrl, settings.resultUrl, settings.queue);
  client.conf.CELERY_BROKER_OPTIONS = REDIS_OPTIONS;
  client.conf.CELERY_BACKEND_OPTIONS = REDIS_OPTIONS;
  let sequence = null;
  let pushed = false;
  try {
    await client.isReady();
    // Taken after the checks and just before the push, so a refused file leaves no gap.
    if (options.sequence) {
      sequence = Number(await redis.eval(NEXT_SEQUENCE, 1, `${settings.queue}:sequence`, 0, MAX_SEQUENCE, EPOCH_FACTOR));
    }
    const message = {
      schema_version: options.sequence ? SCHEMA_VERSION : 1,
      batch_id: batchId,
      sequence,
      source,
      submitted_at: new Date().toISOString(),
      items: records,
    };
    // The submission trace: `catalog status` says "queued" (and since when) until the result exists.
    const trace = {
      batch_id: batchId, source, sequence, records: records.length, submitted_at: message.submitted_at,
      content_sha256: crypto.createHash("sha256").update(sortedJson(records)).digest("hex"),
    };
    await redis.set(`${settings.queue}:submitted:${batchId}`, JSON.stringify(trace), "EX", settings.resultExpires);

    // celery-node builds the protocol-2 message; the task id MUST be the batch id, and kwargs
    // MUST be {} (celery-node sends null when none is given).
    const task = client.createTaskMessage(batchId, TASK, [message], {});
    const headers = {
      ...task.headers, root_id: batchId, parent_id: null, group: null, retries: 0, eta: null, expires: null,
      timelimit: [null, null], argsrepr: `[${batchId}: ${records.length} record(s)]`, kwargsrepr: "{}",
      origin: `node-producer@${os.hostname()}`,
    };
    const properties = { correlation_id: batchId, reply_to: "", priority: 0 };
    // The broker's publish, awaited: `client.sendTask` does not return the LPUSH, so a process
    // that exits (or disconnects) right after it can lose the message.
    await client.broker.publish(task.body, "", settings.queue, headers, properties);
    pushed = true;
    console.log(JSON.stringify({ batch_id: batchId, status: "queued", sequence, records: records.length, queue: settings.queue }));

    if (options.wait === null) return 0;
    return await waitForResult(client, batchId, options.wait);
  } catch (error) {
    if (sequence !== null && !pushed) {
      // Never queued: give the sequence up, so later batches do not wait for it (best effort).
      await redis.sadd(`${settings.queue}:sequence:abandoned`, sequence).catch(() => {});
    }
    throw error;
  } finally {
    await client.disconnect().catch(() => {});
    redis.disconnect();
  }
}

const EXIT_BY_STATUS = { applied: 0, unchanged: 0, duplicate: 0, rejected: 1 };

async function waitForResult(client, batchId, seconds) {
  try {
    const result = await client.asyncResult(batchId).get(seconds * 1000, 200);
    console.log(JSON.stringify(result));
    if (result.status === "duplicate" && (result.content_matches === false || (result.original || {}).status === "rejected")) return 1;
    return EXIT_BY_STATUS[result.status] ?? 3;
  } catch (error) {
    if (error.message === "TIMEOUT") {
      console.error(`batch ${batchId} is not finished after ${seconds}s; ask again with \`catalog status ${batchId}\``);
      return 4;
    }
    console.error(`batch ${batchId} failed: ${JSON.stringify(error.exc_message || error.message)}`);
    return 3;
  }
}

function redactedUrl(url) {
  return url.replace(/\/\/([^@/]*)@/, "//***@");
}

async function main() {
  const settings = settingsFromEnv(process.env);
  let options;
  try {
    options = parseArgs(process.argv.slice(2));
  } catch (error) {
    console.error(`error: ${error.message} (see --help)`);
    return 2;
  }
  if (options.help) {
    console.log(fs.readFileSync(__filename, "utf8").split("\n").slice(1, 9).map((line) => line.replace(/^\/\/ ?/, "")).join("\n"));
    return 0;
  }
  try {
    return await enqueue(options, settings);
  } catch (error) {
    if (error instanceof UsageError) {
      console.error(`error: ${error.message}`);
      return 2;
    }
    console.error(`error: cannot queue the batch on ${redactedUrl(settings.redisUrl)}: ${error.message}`);
    return 3;
  }
}

if (require.main === module) {
  main().then((code) => process.exit(code));
}

module.exports = { NEXT_SEQUENCE, readRecords, sortedJson };
