// A member's Raft address, `host:port` (ADDRESS_PATTERN), split for a socket.
export function splitAddress(address: string): { host: string; port: number } {
  const i = address.lastIndexOf(':');
  return { host: address.slice(0, i), port: Number(address.slice(i + 1)) };
}
