import net from 'node:net'

/**
 * A TCP proxy in front of Postgres that, once armed, lets the next client
 * message containing `marker` through, swallows the server's whole reply
 * (up to its ReadyForQuery, so the statement has committed) and then cuts
 * that connection: a reply lost with its connection.
 */
export class ReplyCutter {
  readonly #server: net.Server
  readonly #sockets = new Set<net.Socket>()
  #marker: Buffer | null = null
  #unless: Buffer[] = []
  cuts = 0
  port = 0

  constructor(target: URL) {
    const [port, host] = [Number(target.port || 5432), target.hostname]
    this.#server = net.createServer((client) => {
      const upstream = net.connect(port, host)
      let swallowing = false
      let swallowed = Buffer.alloc(0)
      const cut = () => {
        client.destroy()
        upstream.destroy()
      }
      for (const s of [client, upstream]) {
        this.#sockets.add(s)
        s.on('error', cut)
        s.on('close', () => {
          this.#sockets.delete(s)
          cut()
        })
      }
      client.on('data', (chunk) => {
        if (this.#marker && chunk.includes(this.#marker) && !this.#unless.some((u) => chunk.includes(u))) {
          this.#marker = null
          swallowing = true
        }
        upstream.write(chunk)
      })
      upstream.on('data', (chunk) => {
        if (!swallowing) return void client.write(chunk)
        swallowed = Buffer.concat([swallowed, chunk])
        // ReadyForQuery, idle: 'Z', length 5, status 'I'. The implicit transaction has committed.
        if (swallowed.subarray(-6).equals(Buffer.from([0x5a, 0, 0, 0, 5, 0x49]))) {
          this.cuts++
          cut()
        }
      })
    })
  }

  async listen(): Promise<void> {
    await new Promise<void>((resolve) => this.#server.listen(0, '127.0.0.1', resolve))
    this.port = (this.#server.address() as net.AddressInfo).port
  }

  /** Cut the reply of the next message containing `marker` (and none of `unless`, when given). */
  arm(marker: string, options: { unless?: string | string[] } = {}): void {
    this.#marker = Buffer.from(marker)
    this.#unless = [options.unless ?? []].flat().map((u) => Buffer.from(u))
  }

  async close(): Promise<void> {
    for (const s of this.#sockets) s.destroy()
    await new Promise<void>((resolve) => this.#server.close(() => resolve()))
  }
}
