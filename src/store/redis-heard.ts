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
 * Cluster finds them). A Cluster's scripts go to the master serving the store's slot: followed
 * per call, so a failover or a moved slot is followed, and `onScriptNodeChange` is told when it
 * becomes another node (the store then checks whether that server holds the last writes).
 */
export class RedisHeard {
  private readonly heard = new WeakMap<Redis, Heard>();
  private readonly client: Redis;
  private readonly cluster: Cluster | null;
  private readonly slot: number;
  private readonly onScriptNodeChange: () => void;
  /** A Cluster's node serving the slot, as last found (by its `host:port`, the slots map's key). */
  private slotNode: { key: string; node: Redis } | null = null;
  /** When any watched connection last brought bytes from Redis (a connect alone does not count). */
  private lastAnswerAtMs = 0;

  /** `routeKey`: the key every script is sent with (the one a Cluster routes them by). */
  constructor(client: Redis, routeKey: string, onScriptNodeChange: () => void = () => {}) {
    this.client = client;
    this.cluster = clusterOf(client);
    this.slot = calculateSlot(routeKey);
    this.onScriptNodeChange = onScriptNodeChange;
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

  /**
   * Whether Redis answered within the last `ms` (any of a Cluster's nodes: its slot's master may
   * just have moved to a node the store had not talked to).
   */
  heardWithin(ms: number): boolean {
    return Date.now() - this.lastAnswerAtMs < ms;
  }

  /**
   * The connection the scripts go over: the client, or the Cluster's node serving the store's
   * slot (null while the Cluster has no live node for it, as between a master's loss and its
   * replica's promotion).
   */
  scriptConnection(): Redis | null {
    if (!this.cluster) return this.client;
    const key = this.cluster.slots[this.slot]?.[0];
    if (key === undefined) return null;
    const known = this.slotNode;
    if (known?.key === key && known.node.status !== 'end') return known.node;
    const node = this.cluster.nodes('master').find((n) => `${n.options.host}:${n.options.port}` === key);
    if (!node) return null;
    this.slotNode = { key, node };
    // Another node, or the same address connected anew (a restarted server): not the first found.
    if (known) this.onScriptNodeChange();
    return node;
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
        this.lastAnswerAtMs = heard.atMs;
      });
    };
    connection.on('connect', attach);
    attach();
  }
}
