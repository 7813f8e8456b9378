// What each local image holds and how it starts. hack/images/build.ts builds from these;
// test/unit/images/dockerfile-agreement.test.ts checks that the radflow image says what the
// Dockerfile says (user, workdir, entry point, files copied, environment, ports), so the image a
// hospital builds with Docker and the one the local node runs are the same program.

/** Debian release and packages of the shared base layer: glibc and the C++ runtime Node needs,
 * base-files (os-release) and netbase (/etc/services, /etc/protocols). No shell, no package
 * manager: nothing a container would need at run time, and less for a scanner to flag. */
export const DEBIAN_SUITE = "bookworm";
export const BASE_PACKAGES = ["base-files", "netbase", "libc6", "libgcc-s1", "libstdc++6"];
/** The unprivileged user every image runs as (the node:slim images' "node" user, uid 1000). */
export const USER = { name: "node", uid: 1000, gid: 1000 };

/** Where an image's application files come from. */
export type Source =
  /** src/ compiled by tsc -p tsconfig.build.json (the Dockerfile's build stage) */
  | { kind: "compiled" }
  /** node_modules from `npm ci --omit=dev --ignore-scripts` of the repository's lock file */
  | { kind: "production-dependencies"; only?: string[] }
  /** a file or folder of the repository, copied as it is */
  | { kind: "repo"; path: string };

export interface ImageSpec {
  /** the name containerd records (ctr images import reads io.containerd.image.name) */
  ref: string;
  user: string;
  workdir: string;
  entrypoint: string[];
  cmd?: string[];
  env: Record<string, string>;
  exposedPorts?: number[];
  /** files of the application layer: absolute destination in the image, and where from */
  files: { dest: string; from: Source }[];
  /** repository files and folders whose content decides the image (the rebuild stamp) */
  inputs: string[];
  description: string;
}

const PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

export const IMAGES: Record<string, ImageSpec> = {
  radflow: {
    ref: "radflow.local/radflow:dev",
    user: `${USER.uid}:${USER.gid}`,
    workdir: "/app",
    entrypoint: ["node", "/app/dist/cmd/radflow.js"],
    cmd: ["operator"],
    env: { PATH, NODE_ENV: "production" },
    exposedPorts: [8080, 8081],
    files: [
      { dest: "/app/node_modules", from: { kind: "production-dependencies" } },
      { dest: "/app/dist", from: { kind: "compiled" } },
      { dest: "/app/package.json", from: { kind: "repo", path: "package.json" } },
    ],
    inputs: ["package.json", "package-lock.json", "tsconfig.json", "tsconfig.build.json", "src"],
    description: "radflow operator, CLI and gateway",
  },
  "example-model": {
    ref: "radflow.local/example-model:dev",
    user: `${USER.uid}:${USER.gid}`,
    workdir: "/model",
    // Node strips the types of a .ts file outside node_modules itself: no build step
    entrypoint: ["node", "/model/model.ts"],
    env: { PATH, NODE_ENV: "production" },
    files: [
      { dest: "/model/model.ts", from: { kind: "repo", path: "examples/model/model.ts" } },
      { dest: "/model/package.json", from: { kind: "repo", path: "examples/model/package.json" } },
      { dest: "/model/node_modules", from: { kind: "production-dependencies", only: ["dcmjs"] } },
    ],
    inputs: ["examples/model", "package-lock.json"],
    description: "radflow example model: CT hyperdensity share from a study's pixels",
  },
};
