// STOW-RS authentication: a bearer token (RFC 6750) from a file — in the chart, a key of a
// Secret mounted as a volume, so a rotated Secret takes effect without a restart. The file holds
// one token per line (several: rotation without a gap); blank lines and lines starting with #
// are ignored. Tokens are compared by their SHA-256 digests in constant time.
import { createHash, timingSafeEqual } from "node:crypto";
import { readFile, stat } from "node:fs/promises";

const digest = (s: string) => createHash("sha256").update(s, "utf8").digest();

export type AuthResult = { ok: true } | { ok: false; status: 401; challenge: string; detail: string };

export class BearerTokens {
  private readonly file: string;
  private tokens: Buffer[] = [];
  private loaded = "";
  private checkedAt = 0;
  private readonly recheckMs: number;

  constructor(file: string, recheckMs = 5000) {
    this.file = file;
    this.recheckMs = recheckMs;
  }

  /** Reads the file (again when it changed); throws when it is unreadable or holds no token. */
  async load(): Promise<void> {
    const st = await stat(this.file);
    this.checkedAt = Date.now();
    // inode too: a rotated Secret is a new file behind a swapped symlink, maybe with the same mtime
    const version = `${st.ino}:${st.size}:${st.mtimeMs}`;
    if (version === this.loaded) return;
    const tokens = (await readFile(this.file, "utf8"))
      .split(/\r?\n/)
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith("#"));
    if (tokens.length === 0) throw new Error(`${this.file}: no token in the file`);
    this.tokens = tokens.map(digest);
    this.loaded = version;
  }

  /** Checks a request's Authorization header. */
  async check(authorization: string | undefined): Promise<AuthResult> {
    // >=: a recheck interval of 0 means every request (with > two checks in one millisecond skipped it)
    if (Date.now() - this.checkedAt >= this.recheckMs) {
      // keep the tokens we have if the file is briefly unreadable (a Secret being swapped)
      await this.load().catch(() => {});
    }
    const m = /^Bearer\s+(\S+)\s*$/i.exec(authorization ?? "");
    if (!m) {
      return { ok: false, status: 401, challenge: 'Bearer realm="radflow-stow"', detail: "a bearer token is required" };
    }
    const given = digest(m[1] as string);
    let match = false;
    for (const t of this.tokens) match = timingSafeEqual(t, given) || match;
    if (match) return { ok: true };
    return {
      ok: false,
      status: 401,
      challenge: 'Bearer realm="radflow-stow", error="invalid_token"',
      detail: "the bearer token is not valid",
    };
  }
}
