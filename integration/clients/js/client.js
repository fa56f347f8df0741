#!/usr/bin/env node
// The client scenario (../SCENARIO.md) with kafkajs.
//
//   node client.js BOOTSTRAP TOPIC PARTITIONS COUNT
//
// kafkajs has no group-less consumer (its consumer always joins a group, which
// the broker under test does not support yet), so this program only creates
// the topic (admin API), produces with an idempotent producer (acks=all) and
// checks every partition's end offset with admin.fetchTopicOffsets. The test
// harness then verifies the records' content with another client in
// SCENARIO_MODE=consume. SCENARIO_MODE=consume here only checks end offsets.
'use strict';

const { Kafka, logLevel, Partitioners, CompressionTypes } = require('kafkajs');

const CLIENT = 'kafkajs';
const FILLER = 'abcdefghijklmnopqrstuvwxyz0123456789';

class ScenarioError extends Error {}

function parseArgs() {
  const argv = process.argv.slice(2);
  if (argv.length !== 4) {
    console.error('usage: client.js BOOTSTRAP TOPIC PARTITIONS COUNT (see SCENARIO.md)');
    process.exit(2);
  }
  const env = process.env;
  const a = {
    bootstrap: argv[0],
    topic: argv[1],
    partitions: parseInt(argv[2], 10),
    count: parseInt(argv[3], 10),
    mode: env.SCENARIO_MODE || 'all',
    create: (env.SCENARIO_CREATE || '1') !== '0',
    baseTs: env.SCENARIO_BASE_TS
      ? Number(env.SCENARIO_BASE_TS)
      : Math.floor((Date.now() - 600000) / 1000) * 1000,
    compression: env.SCENARIO_COMPRESSION || 'none',
    timeoutMs: Math.round(parseFloat(env.SCENARIO_TIMEOUT || '120') * 1000),
  };
  if (!(a.partitions >= 1) || !(a.count >= 0)) {
    console.error('PARTITIONS must be >= 1 and COUNT >= 0');
    process.exit(2);
  }
  if (!['all', 'produce', 'consume'].includes(a.mode)) {
    console.error(`bad SCENARIO_MODE ${a.mode}`);
    process.exit(2);
  }
  return a;
}

const pad6 = (i) => String(i).padStart(6, '0');

function valueOf(i) {
  if (i % 50 === 49) return null;
  const n = (i * 37) % 300;
  let s = `value-${pad6(i)}-`;
  for (let k = 0; k < n; k++) s += FILLER[k % FILLER.length];
  return Buffer.from(s);
}

function headersOf(i) {
  // kafkajs encodes an array value as repeated headers with the same key, in
  // order; object key order is insertion order.
  const h = { idx: String(i), src: 'inkless-test', dup: ['1', '2'] };
  if (i % 3 === 0) h.empty = Buffer.alloc(0);
  return h;
}

function fail(a, msg) {
  return new ScenarioError(`${CLIENT}: topic ${a.topic}: ${msg}`);
}

function expectedPerPartition(a) {
  const e = new Array(a.partitions).fill(0);
  for (let i = 0; i < a.count; i++) e[i % a.partitions]++;
  return e;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitTopic(a, admin) {
  const deadline = Date.now() + a.timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    try {
      const md = await admin.fetchTopicMetadata({ topics: [a.topic] });
      const t = md.topics.find((x) => x.name === a.topic);
      if (t && t.partitions.length === a.partitions && t.partitions.every((p) => p.leader >= 0)) return;
      last = t ? `${t.partitions.length} partitions` : 'absent';
    } catch (e) {
      last = String(e);
    }
    await sleep(200);
  }
  throw fail(a, `not ready with ${a.partitions} partitions after ${a.timeoutMs} ms (last: ${last})`);
}

async function produce(a, kafka) {
  const compression = {
    none: CompressionTypes.None,
    gzip: CompressionTypes.GZIP,
  }[a.compression];
  if (compression === undefined) {
    throw new Error(`kafkajs supports only SCENARIO_COMPRESSION none|gzip without extra codecs, got ${a.compression}`);
  }
  const producer = kafka.producer({
    idempotent: true,
    maxInFlightRequests: 1,
    createPartitioner: Partitioners.DefaultPartitioner,
  });
  await producer.connect();
  try {
    const chunk = 500;
    for (let start = 0; start < a.count; start += chunk) {
      const messages = [];
      for (let i = start; i < Math.min(a.count, start + chunk); i++) {
        messages.push({
          key: Buffer.from(`key-${pad6(i)}`),
          value: valueOf(i),
          partition: i % a.partitions,
          timestamp: String(a.baseTs + i),
          headers: headersOf(i),
        });
      }
      const res = await producer.send({ topic: a.topic, acks: -1, compression, timeout: a.timeoutMs, messages });
      for (const r of res) {
        if (r.errorCode !== 0) throw fail(a, `produce to partition ${r.partition}: error code ${r.errorCode}`);
      }
    }
  } finally {
    await producer.disconnect();
  }
}

async function checkEndOffsets(a, admin) {
  const expected = expectedPerPartition(a);
  const offs = await admin.fetchTopicOffsets(a.topic);
  if (offs.length !== a.partitions) {
    throw fail(a, `fetchTopicOffsets returned ${offs.length} partitions, expected ${a.partitions}`);
  }
  for (const o of offs) {
    if (Number(o.high) !== expected[o.partition] || Number(o.low) !== 0) {
      throw fail(a, `partition ${o.partition}: offsets low ${o.low} high ${o.high}, expected 0 and ${expected[o.partition]}`);
    }
  }
}

async function main() {
  const a = parseArgs();
  const t0 = Date.now();
  const kafka = new Kafka({
    clientId: 'inkless-kafkajs-test',
    brokers: [a.bootstrap],
    logLevel: logLevel.WARN,
    requestTimeout: a.timeoutMs,
  });
  const admin = kafka.admin();
  await admin.connect();
  try {
    if (a.mode !== 'consume') {
      if (a.create) {
        const created = await admin.createTopics({
          topics: [{ topic: a.topic, numPartitions: a.partitions, replicationFactor: 1 }],
          waitForLeaders: true,
          timeout: a.timeoutMs,
        });
        if (!created) throw fail(a, 'createTopics returned false (topic already exists?)');
      }
      await waitTopic(a, admin);
      await produce(a, kafka);
    }
    await waitTopic(a, admin);
    await checkEndOffsets(a, admin);
  } finally {
    await admin.disconnect();
  }
  console.log(`OK ${CLIENT} ${a.mode} ${a.count} records in ${((Date.now() - t0) / 1000).toFixed(1)}s`);
}

main().then(
  () => process.exit(0),
  (e) => {
    if (e instanceof ScenarioError) {
      console.error(`FAIL ${e.message}`);
    } else {
      console.error(e && e.stack ? e.stack : e);
      console.error(`FAIL ${CLIENT}: ${e}`);
    }
    process.exit(1);
  },
);
