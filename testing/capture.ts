// Packet capture on the lab's bridge with tcpdump: re-exported from adapters/lab/capture.ts.
export { Capture, type Packet } from '../adapters/lab/capture.js';
