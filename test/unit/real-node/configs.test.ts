// The real node's configuration as hack/cluster up --real-node writes it: the settings this
// machine kind needs (cgroup v1 without systemd, no CAP_SYS_RESOURCE, no iptables), everything in
// the cluster's folder, and every port fixed below the kernel's ephemeral range.
import yaml from "js-yaml";
import { describe, expect, it } from "vitest";
import { nodeConfigs, realNodePorts } from "../../../hack/real-node/node.ts";

const dir = "/tmp/radflow-cluster-x";
const bin = "/cache/radflow/bin";
const c = nodeConfigs(dir, bin, "overlayfs");

describe("real node configuration", () => {
  it("fills in every placeholder", () => {
    for (const text of Object.values(c)) expect(text).not.toMatch(/\{\{[A-Z_]+\}\}/);
  });

  it("kubelet: cgroupfs on cgroup v1, loopback only, its own cgroup root, logs and runtime in the cluster's folder", () => {
    const k = yaml.load(c.kubelet) as Record<string, unknown>;
    expect(k).toMatchObject({
      kind: "KubeletConfiguration",
      cgroupDriver: "cgroupfs",
      failCgroupV1: false,
      failSwapOn: false,
      address: "127.0.0.1",
      healthzBindAddress: "127.0.0.1",
      readOnlyPort: 0,
      cgroupRoot: "/radflow-node",
      podLogsDir: `${dir}/kubelet/pod-logs`,
      containerRuntimeEndpoint: `unix://${dir}/containerd/containerd.sock`,
      // imported images are all there is: never collected
      imageGCHighThresholdPercent: 100,
    });
  });

  it("containerd: private root, state and socket; runc from the tools cache, cgroupfs, restricted oom_score_adj, NRI off", () => {
    const t = c.containerd;
    expect(t).toContain(`root = "${dir}/containerd/root"`);
    expect(t).toContain(`state = "${dir}/containerd/state"`);
    expect(t).toContain(`address = "${dir}/containerd/containerd.sock"`);
    expect(t).toContain(`BinaryName = "${bin}/runc"`);
    expect(t).toContain(`runtime_path = "${bin}/containerd-shim-runc-v2"`);
    expect(t).toMatch(/SystemdCgroup = false/);
    expect(t).toMatch(/restrict_oom_score_adj = true/);
    expect(t).toMatch(/\[plugins\.'io\.containerd\.nri\.v1\.nri'\]\s+disable = true/);
    expect(t).toMatch(/netns_mounts_under_state_dir = true/);
    expect(t).toContain('snapshotter = "overlayfs"');
    expect(nodeConfigs(dir, bin, "native").containerd).toContain('snapshotter = "native"');
  });

  it("CNI: a bridge without masquerading (no iptables) and IPAM state in the cluster's folder", () => {
    const n = JSON.parse(c.cni) as { plugins: Record<string, unknown>[] };
    expect(n.plugins[0]).toMatchObject({
      type: "bridge",
      ipMasq: false,
      ipam: { type: "host-local", dataDir: `${dir}/cni/ipam` },
    });
  });

  it("uses fixed ports below the ephemeral range (24600–24699 by default)", () => {
    const p = realNodePorts({});
    for (const port of Object.values(p)) {
      expect(port).toBeGreaterThanOrEqual(24600);
      expect(port).toBeLessThan(24700);
    }
    expect(c.containerd).toContain(`stream_server_port = "${p.stream}"`);
    expect(realNodePorts({ RADFLOW_REAL_NODE_PORT_BASE: "25000" }).kubelet).toBe(25000);
  });
});
