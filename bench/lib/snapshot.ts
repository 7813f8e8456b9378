// The operator's sources are copied once at the start of a run and every operator instance runs
// from the copy: the repository is shared with other engineers, and a commit or an edit landing
// mid-run would otherwise make later scenarios measure different code than earlier ones.
import { execFileSync } from "node:child_process";
import { cpSync, mkdirSync, symlinkSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

export interface SourceSnapshot {
  root: string;
  commit: string;
  /** files under src/ that differ from the commit when the snapshot was taken */
  uncommitted: string[];
}

function git(args: string[]): string {
  try {
    // trimEnd: a porcelain line starts with a space (" M src/…"), part of its fixed-width status
    return execFileSync("git", args, { cwd: repo, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trimEnd();
  } catch {
    return "";
  }
}

/**
 * Copies the operator's sources; with `rev`, those of that git revision (a before/after pair
 * measured with the same benchmark code, whatever the working tree holds meanwhile).
 */
export function snapshotSources(workDir: string, rev?: string): SourceSnapshot {
  const root = path.join(workDir, "operator-src");
  mkdirSync(path.join(root, "bench"), { recursive: true });
  if (rev) {
    const commit = git(["rev-parse", "--verify", `${rev}^{commit}`]);
    if (!commit) throw new Error(`--sources: ${JSON.stringify(rev)} is not a commit of ${repo}`);
    const tar = execFileSync("git", ["archive", commit, "src", "bench/lib", "package.json"], {
      cwd: repo,
      maxBuffer: 256 * 1024 * 1024,
    });
    execFileSync("tar", ["-x", "-C", root], { input: tar });
    symlinkSync(path.join(repo, "node_modules"), path.join(root, "node_modules"));
    return { root, commit: commit.slice(0, 7), uncommitted: [] };
  }
  cpSync(path.join(repo, "src"), path.join(root, "src"), { recursive: true });
  cpSync(path.join(repo, "bench/lib"), path.join(root, "bench/lib"), { recursive: true });
  cpSync(path.join(repo, "package.json"), path.join(root, "package.json"));
  symlinkSync(path.join(repo, "node_modules"), path.join(root, "node_modules"));
  return {
    root,
    commit: git(["rev-parse", "--short", "HEAD"]),
    uncommitted: porcelainPaths(git(["status", "--porcelain", "--", "src"])),
  };
}

/** The paths of `git status --porcelain` output: each line is two status columns, a space, the path. */
export function porcelainPaths(text: string): string[] {
  return text
    .split("\n")
    .filter(Boolean)
    .map((l) => l.slice(3));
}
