// The NATS connection: reconnects forever with capped exponential backoff and jitter, and takes
// credentials from files (Kubernetes Secrets mounted as files rotate in place, so files are
// re-read on every connect) or from the environment.
import { readFileSync } from "node:fs";
import {
  type Authenticator,
  type ConnectionOptions,
  connect,
  credsAuthenticator,
  type NatsConnection,
  nkeyAuthenticator,
  tokenAuthenticator,
  usernamePasswordAuthenticator,
} from "@nats-io/transport-node";
import { logger } from "../log/logger.ts";

const log = logger("nats");

export interface NatsSettings {
  /** nats://host:port, comma-separated or a list. */
  servers: string | string[];
  name?: string;
  user?: string;
  password?: string;
  passwordFile?: string;
  token?: string;
  tokenFile?: string;
  /** A NATS .creds file (user JWT + nkey seed), as `nsc` makes. */
  credsFile?: string;
  /** A file holding an nkey user seed (SU…). */
  nkeySeedFile?: string;
  tlsCaFile?: string;
  tlsCertFile?: string;
  tlsKeyFile?: string;
  /**
   * Keep retrying the first connection instead of failing (the operator: NATS may start after
   * it). The CLI sets false to fail fast.
   */
  waitForServer?: boolean;
  /** Reconnect attempts per server after a connection was made; -1 (default) is forever. */
  maxReconnectAttempts?: number;
}

/** Settings from RADFLOW_NATS_* environment variables. */
export function natsSettingsFromEnv(env: NodeJS.ProcessEnv = process.env): NatsSettings {
  const v = (k: string) => (env[k] === undefined || env[k] === "" ? undefined : env[k]);
  return {
    servers: (v("RADFLOW_NATS_URL") ?? "nats://127.0.0.1:4222").split(",").map((s) => s.trim()),
    user: v("RADFLOW_NATS_USER"),
    password: v("RADFLOW_NATS_PASSWORD"),
    passwordFile: v("RADFLOW_NATS_PASSWORD_FILE"),
    token: v("RADFLOW_NATS_TOKEN"),
    tokenFile: v("RADFLOW_NATS_TOKEN_FILE"),
    credsFile: v("RADFLOW_NATS_CREDS"),
    nkeySeedFile: v("RADFLOW_NATS_NKEY_SEED_FILE"),
    tlsCaFile: v("RADFLOW_NATS_TLS_CA"),
    tlsCertFile: v("RADFLOW_NATS_TLS_CERT"),
    tlsKeyFile: v("RADFLOW_NATS_TLS_KEY"),
  };
}

/** Reconnect delay for the n-th consecutive attempt: 250 ms doubling to 30 s, ±20 % jitter. */
export function reconnectDelay(attempt: number): number {
  const base = Math.min(30_000, 250 * 2 ** Math.min(attempt, 10));
  return Math.round(base * (0.8 + Math.random() * 0.4));
}

const readText = (f: string) => readFileSync(f, "utf8").trim();

/** The connection options for the settings (pure, apart from reading credential files lazily). */
export function connectionOptions(s: NatsSettings, onAttempt: () => number): ConnectionOptions {
  const auth: Authenticator[] = [];
  if (s.credsFile) {
    const f = s.credsFile;
    auth.push(credsAuthenticator(() => readFileSync(f)));
  } else if (s.nkeySeedFile) {
    const f = s.nkeySeedFile;
    auth.push(nkeyAuthenticator(() => new TextEncoder().encode(readText(f))));
  }
  if (s.user) {
    const pf = s.passwordFile;
    auth.push(usernamePasswordAuthenticator(s.user, pf ? () => readText(pf) : (s.password ?? "")));
  } else if (s.token || s.tokenFile) {
    const tf = s.tokenFile;
    auth.push(tokenAuthenticator(tf ? () => readText(tf) : (s.token ?? "")));
  }
  const tls =
    s.tlsCaFile || s.tlsCertFile
      ? {
          ...(s.tlsCaFile ? { caFile: s.tlsCaFile } : {}),
          ...(s.tlsCertFile ? { certFile: s.tlsCertFile } : {}),
          ...(s.tlsKeyFile ? { keyFile: s.tlsKeyFile } : {}),
        }
      : undefined;
  return {
    servers: s.servers,
    name: s.name ?? "radflow",
    maxReconnectAttempts: s.maxReconnectAttempts ?? -1,
    waitOnFirstConnect: s.waitForServer ?? true,
    reconnectDelayHandler: onAttempt,
    // the auth-error abort would end a forever-reconnecting operator on one bad credential rotation
    ignoreAuthErrorAbort: (s.maxReconnectAttempts ?? -1) === -1,
    ...(auth.length ? { authenticator: auth.length === 1 ? auth[0] : auth } : {}),
    ...(tls ? { tls } : {}),
  };
}

/** Connects; with waitForServer (default) resolves only once a server answered. */
export async function connectNats(s: NatsSettings): Promise<NatsConnection> {
  // nats.js asks for the delay on every turn of its reconnect loop, also on the turns where it
  // only sleeps until the server's next dial is due. Counting calls as attempts doubled the delay
  // faster than time passed, so after a failed dial the next one came only at the 30 s cap,
  // however short the outage. The backoff advances once per elapsed delay instead.
  let attempt = 0;
  let current = 0;
  let advanceAt = 0;
  const delay = () => {
    const now = Date.now();
    if (now >= advanceAt) {
      current = reconnectDelay(attempt++);
      advanceAt = now + current;
    }
    return current;
  };
  const nc = await connect(connectionOptions(s, delay));
  log.info({ server: nc.getServer() }, "connected to NATS");
  void (async () => {
    for await (const st of nc.status()) {
      switch (st.type) {
        case "disconnect":
          log.warn({ server: st.server }, "disconnected from NATS");
          break;
        case "reconnect":
          attempt = 0;
          advanceAt = 0;
          log.info({ server: st.server }, "reconnected to NATS");
          break;
        case "error":
          log.error({ err: st.error.message }, "NATS connection error");
          break;
        case "ldm":
          log.warn({ server: st.server }, "NATS server entering lame-duck mode");
          break;
      }
    }
  })();
  return nc;
}
