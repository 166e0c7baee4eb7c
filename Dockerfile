# syntax=docker/dockerfile:1
# Multi-stage build: compile TypeScript with dev dependencies, ship only dist/ and prod deps.
FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY scripts/copy-assets.ts ./scripts/
RUN npm run build

FROM node:24-bookworm-slim AS runtime
ENV NODE_ENV=production
ENV PORT=8000
ENV MEDIA_DIR=/app/media
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
# The only paths the gateway writes (with LOG_DIR=/app/logs); the root filesystem may be
# read-only (docker-compose.yml, deploy/k8s), with these and /tmp mounted writable.
RUN mkdir -p /app/media /app/logs && chown -R node:node /app/media /app/logs
# The image's `node` user, by number: Kubernetes' runAsNonRoot can only check a numeric user.
USER 1000:1000
EXPOSE 8000
# Liveness only (no I/O); readiness is /health/detailed (deploy/k8s probes it).
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s \
  CMD node -e "fetch('http://127.0.0.1:'+(process.env.PORT||8000)+'/health').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
# SIGTERM from `docker stop` / Kubernetes triggers the graceful shutdown (SHUTDOWN_TIMEOUT_MS).
CMD ["node", "dist/main.js"]
