# taskrelay image for docker-compose.yml: the CLI (relay, worker, sweeper,
# scheduler, migrate...) plus the example app. Node >= 22.18 runs the
# TypeScript sources directly (type stripping), so there is no build step.
FROM node:24-slim
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund
COPY bin ./bin
COPY src ./src
COPY migrations ./migrations
COPY examples ./examples
ENV NODE_ENV=production
USER node
ENTRYPOINT ["node", "bin/taskrelay.js"]
CMD ["--help"]
