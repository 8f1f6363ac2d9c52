//! TLS against a real cluster that speaks only TLS and requires client certificates
//! (`ratequeue dev --ephemeral --json --tls --tls-client-auth`: the kit makes a CA, node
//! certificates and a client certificate at start; no key is committed): the CA bundle and
//! client certificate from options and from RATEQUEUE_CA_FILE / RATEQUEUE_CLIENT_CERT /
//! RATEQUEUE_CLIENT_KEY, redirects between https nodes, and misconfigurations failing with
//! the file or the cause named.

import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";

import * as rq from "../../src/index.js";
import { Cluster, resourceName } from "./cluster.js";

const TLS_ENV = ["RATEQUEUE_CA_FILE", "RATEQUEUE_CLIENT_CERT", "RATEQUEUE_CLIENT_KEY"] as const;
/** Fail fast where a misconfiguration is retried (the JS SDK retries it as unreachable). */
const SHORT = { retryBudgetMs: 300, connectTimeoutMs: 2000 };

let cluster: Cluster;
let key: string;

function files(): { caFile: string; clientCert: string; clientKey: string } {
  const t = cluster.tls!;
  return { caFile: t.ca_file, clientCert: t.client_cert, clientKey: t.client_key };
}

/** Runs `fn` with the TLS variables set to `values` (unset where undefined), then restores. */
async function withEnv<T>(values: Partial<Record<(typeof TLS_ENV)[number], string>>, fn: () => Promise<T> | T): Promise<T> {
  const saved = TLS_ENV.map((n) => [n, process.env[n]] as const);
  for (const n of TLS_ENV) {
    const v = values[n];
    if (v === undefined) delete process.env[n];
    else process.env[n] = v;
  }
  try {
    return await fn();
  } finally {
    for (const [n, v] of saved) {
      if (v === undefined) delete process.env[n];
      else process.env[n] = v;
    }
  }
}

before(async () => {
  cluster = await Cluster.start(3, { tls: true });
  key = await cluster.createKey(`js-tls-${process.pid}`, ["js-*"]);
});
after(async () => {
  await cluster.close();
});

describe("tls", () => {
  test("the cluster speaks only TLS", () => {
    assert.ok(cluster.urls.every((u) => u.startsWith("https://")), cluster.urls.join());
  });

  test("files as options: acquire, would-block, release", async () => {
    await withEnv({}, async () => {
      const name = resourceName("tls-options");
      await cluster.putResource(name, { concurrency: 1 });
      const client = new rq.Client({ urls: cluster.urls, apiKey: key, ...files() });
      try {
        assert.deepEqual(client.tls, files());
        await client.acquire(name, async (lease) => {
          assert.ok(lease.fencingToken > 0);
          await assert.rejects(client.lease(name, { waitMs: 0 }), rq.WouldBlock);
        });
        assert.equal((await cluster.stats(name)).held, 0);
      } finally {
        client.close();
      }
    });
  });

  test("files from the environment, through a follower's https URL", async () => {
    const f = files();
    await withEnv({ RATEQUEUE_CA_FILE: f.caFile, RATEQUEUE_CLIENT_CERT: f.clientCert, RATEQUEUE_CLIENT_KEY: f.clientKey }, async () => {
      const name = resourceName("tls-env");
      await cluster.putResource(name, { concurrency: 2 });
      const leaderId = await cluster.leaderId();
      const follower = cluster.nodes.find((n) => n.id !== leaderId)!.api_url;
      const client = new rq.Client({ urls: follower, apiKey: key });
      try {
        assert.equal(client.tls.caFile, f.caFile);
        await client.acquire(name, { ttlMs: 2000 }, (lease) => assert.ok(lease.fencingToken > 0));
        assert.ok(client.leader?.startsWith("https://") && client.leader !== follower, String(client.leader));
      } finally {
        client.close();
      }
      // The module-level calls read the same variables.
      await rq.acquire(name, { url: cluster.urls, apiKey: key }, (lease) => assert.ok(lease.fencingToken > 0));
    });
  });

  test("a node certificate Node's CAs do not vouch for is refused, and the cause named", async () => {
    const f = files();
    await withEnv({}, async () => {
      const client = new rq.Client({ urls: cluster.urls, apiKey: key, clientCert: f.clientCert, clientKey: f.clientKey, timing: SHORT });
      try {
        await assert.rejects(client.lease(resourceName("tls-no-ca"), { waitMs: 0 }), (e: unknown) => {
          assert.ok(e instanceof rq.Unavailable, String(e));
          assert.match(String(e), /UNABLE_TO_GET_ISSUER_CERT_LOCALLY|SELF_SIGNED|UNABLE_TO_VERIFY|certificate/i);
          return true;
        });
      } finally {
        client.close();
      }
    });
  });

  test("without a client certificate the node refuses the connection", async () => {
    await withEnv({}, async () => {
      const client = new rq.Client({ urls: cluster.urls, apiKey: key, caFile: files().caFile, timing: SHORT });
      try {
        await assert.rejects(client.lease(resourceName("tls-no-cert"), { waitMs: 0 }), (e: unknown) => {
          assert.ok(e instanceof rq.Unavailable, String(e));
          assert.match(String(e), /CERTIFICATE_REQUIRED/i);
          return true;
        });
      } finally {
        client.close();
      }
    });
  });

  test("unusable TLS files fail when the client is made, naming them", async () => {
    const f = files();
    await withEnv({}, () => {
      const missing = join(cluster.nodes[0]!.data_dir, "missing.pem");
      assert.throws(() => new rq.Client({ urls: cluster.urls, caFile: missing }), new RegExp(`CA bundle ${missing}: no such file`));
      // A key is PEM, but not a certificate.
      assert.throws(() => new rq.Client({ urls: cluster.urls, caFile: f.clientKey }), /no PEM certificate/);
      // The CA's certificate with the client's key.
      assert.throws(() => new rq.Client({ urls: cluster.urls, clientCert: f.caFile, clientKey: f.clientKey }), /the key does not belong to the certificate/);
      assert.throws(() => new rq.Client({ urls: cluster.urls, clientCert: f.clientCert }), /needs both its certificate and its key/);
    });
    await withEnv({ RATEQUEUE_CLIENT_KEY: f.clientKey }, () => {
      assert.throws(() => new rq.Client({ urls: cluster.urls }), /RATEQUEUE_CLIENT_CERT and RATEQUEUE_CLIENT_KEY/);
    });
  });
});
