import type { Socket } from 'node:net';
import calculateSlot from 'cluster-key-slot';
import type { Cluster, Redis } from 'ioredis';
import { clusterOf } from './redis-client.ts';

interface Heard {
  socket: Socket | null;
  /** When the socket last brought bytes from Redis (this instance's clock). */
  atMs: number;
}

/**
 * When the connection the store's scripts go over last heard from Redis. ioredis's socket
 * timeout drops a connection, with every command still unanswered on it, a timeout after Redis
 * was last heard at the earliest; a script written behind such commands may be dropped with
 * them, its callers told it failed, and still be run by a stalled Redis that resumes.
 *
 * Watched: a Redis client's connection, or every node's of a Cluster (nodes are watched as the
 * Cluster finds them; the scripts' node is the master serving the store's slot, looked up per
 * call, so a failover or a moved slot is followed).
 */
export class RedisHeard {
  private readonly heard = new WeakMap<Redis, Heard>();
  private readonly client: Redis;
  private readonly cluster: Cluster | null;
  private readonly slot: number;

  /** `routeKey`: the key every script is sent with (the one a Cluster routes them by). */
  constructor(client: Redis, routeKey: string) {
    this.client = client;
    this.cluster = clusterOf(client);
    this.slot = calculateSlot(routeKey);
    if (this.cluster) {
      for (const node of this.cluster.nodes()) this.watch(node);
      this.cluster.on('+node', (node: Redis) => this.watch(node));
    } else this.watch(client);
  }

  /**
   * The moment a command written now may be dropped with its connection: a timeout after Redis
   * was last heard when commands are already unanswered on it, else never (Infinity).
   */
  dropMayComeAtMs(timeoutMs: number): number {
    const connection = this.scriptConnection();
    const heard = connection ? this.heard.get(connection) : undefined;
    if (!connection || !heard?.socket || connection.commandQueue.length === 0)
      return Number.POSITIVE_INFINITY;
    return heard.atMs + timeoutMs;
  }

  private scriptConnection(): Redis | null {
    if (!this.cluster) return this.client;
    const nodeKey = this.cluster.slots[this.slot]?.[0];
    if (nodeKey === undefined) return null;
    return (
      this.cluster.nodes('master').find((n) => `${n.options.host}:${n.options.port}` === nodeKey) ?? null
    );
  }

  private watch(connection: Redis): void {
    if (this.heard.has(connection)) return;
    const heard: Heard = { socket: null, atMs: Date.now() };
    this.heard.set(connection, heard);
    const attach = () => {
      const socket = connection.stream as Socket | undefined;
      if (!socket || socket === heard.socket) return;
      heard.socket = socket;
      heard.atMs = Date.now();
      socket.on('data', () => {
        heard.atMs = Date.now();
      });
    };
    connection.on('connect', attach);
    attach();
  }
}
