// The name of the daemon's status file in its state directory (its own module so that `wgplane status`
// does not load the engine, its metrics and its logger just for a file name).
export const STATUS_FILE = 'status.json';
