# syntax=docker/dockerfile:1
# The radflow operator image.
#   docker build -t radflow:0.1.0 .
#   docker run --rm radflow:0.1.0 operator --help
# Base images are pinned to one Node.js release (the one hack/node.sh uses for development and
# tests). In production also pin the digest: FROM node:24.21.0-slim@sha256:<digest>.
# test/unit/helm-image.test.ts checks this file's rules (pinned bases, numeric non-root USER,
# no remote ADD, production dependencies only) and that the entry point starts the operator.

# 1. Compile TypeScript to dist/ with every dependency, dev ones included.
FROM node:24.21.0-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

# 2. Production dependencies only.
FROM node:24.21.0-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force

# 3. Runtime: compiled code, production node_modules, package.json (ESM type, version).
# Nothing is written at run time; the chart mounts an emptyDir on /tmp and sets
# readOnlyRootFilesystem.
FROM node:24.21.0-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY package.json ./
# the image's "node" user, numeric so that runAsNonRoot can verify it
USER 1000:1000
EXPOSE 8080 8081
ENTRYPOINT ["node", "/app/dist/cmd/radflow.js"]
CMD ["operator"]
