// The real node's test image: a static program that plays a model (or a crashing one) without
// any base image (hack/real-node/images.ts packs it).
module radflow.dev/hack/real-node/probe

go 1.25.0
