import { describe, expect, it } from 'vitest'
import { decodeMessage } from '../../src/redis/keys.ts'
import { parseRedisUrl } from '../../src/redis/connection.ts'

describe('decodeMessage', () => {
  const token = '0b7e5d3a-4c1f-4a8e-9d2b-6f0e1c2d3a4b'

  it('reads id:token', () => {
    expect(decodeMessage(`42:${token}`)).toEqual({ id: '42', token })
  })

  // Each of these passed the old check, then failed the uuid/bigint cast of the claim batch it was in.
  it.each([
    ['a token that is not a uuid', `42:${'-'.repeat(36)}`],
    ['a token of hex without its dashes in place', `42:${'a'.repeat(36)}`],
    ['an id past bigint', `9223372036854775808:${token}`],
    ['an id of 20 digits', `12345678901234567890:${token}`],
  ])('refuses %s', (_, message) => {
    expect(decodeMessage(message)).toBeNull()
  })
})

describe('parseRedisUrl: sentinel passwords', () => {
  it('an unescaped @ stays in the password, not in a host name', () => {
    const s = parseRedisUrl('redis+sentinel://:s3@cr3t@h1:26379,h2:26380/mymaster')
    expect(s.password).toBe('s3@cr3t')
    expect(s.sentinels).toEqual([
      { host: 'h1', port: 26379 },
      { host: 'h2', port: 26380 },
    ])
  })

  it('a stray % in the password is kept as it is', () => {
    expect(parseRedisUrl('redis+sentinel://:50%off@h1:26379/m').password).toBe('50%off')
  })
})
