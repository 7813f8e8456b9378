// A throwaway certificate authority for the DICOM TLS tests, made by openssl (Debian's) in a
// directory of the test's: CAs, and keys with certificates one of them signs, or self-signed ones
// (a peer nobody trusts). Everything lives two days and goes with the test's work directory.
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";

export class TestPki {
  readonly dir: string;

  constructor(dir: string) {
    this.dir = dir;
    mkdirSync(dir, { recursive: true });
  }

  /** The path of a file here: `<name>.key`, `<name>.crt`. */
  file(name: string): string {
    return path.join(this.dir, name);
  }

  /** A file's text (a PEM for a ConfigMap or Secret). */
  pem(name: string): string {
    return readFileSync(this.file(name), "utf8");
  }

  /** A CA: `<name>.key` and its self-signed `<name>.crt`. */
  ca(name: string, cn = `radflow test ${name}`): void {
    this.openssl(
      "req",
      "-x509",
      "-new",
      ...this.newKey(name),
      "-subj",
      `/CN=${cn}`,
      "-days",
      "2",
      "-out",
      `${name}.crt`,
    );
  }

  /**
   * `<name>.key` and `<name>.crt` for CN `cn` with the X.509 extensions `ext` (subjectAltName=…,
   * extendedKeyUsage=…), signed by the CA `signedBy`, or by its own key when signedBy is null.
   */
  cert(name: string, cn: string, ext: string, signedBy: string | null = "ca"): void {
    this.openssl("req", "-new", ...this.newKey(name), "-subj", `/CN=${cn}`, "-out", `${name}.csr`);
    writeFileSync(this.file(`${name}.ext`), `${ext}\n`);
    const sign = signedBy
      ? ["-CA", `${signedBy}.crt`, "-CAkey", `${signedBy}.key`, "-CAcreateserial"]
      : ["-signkey", `${name}.key`];
    const csr = ["-in", `${name}.csr`, "-days", "2", "-sha256", "-extfile", `${name}.ext`, "-out", `${name}.crt`];
    this.openssl("x509", "-req", ...csr, ...sign);
  }

  private newKey(name: string): string[] {
    return ["-newkey", "rsa:2048", "-nodes", "-keyout", `${name}.key`];
  }

  private openssl(...args: string[]): void {
    execFileSync("openssl", args, { cwd: this.dir, stdio: "pipe" });
  }
}
