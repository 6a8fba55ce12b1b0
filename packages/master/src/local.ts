/**
 * The name of the local agent server on a one-box install (`spoke up`). Its own module so the
 * CLI can name it without loading the master's start-up code.
 */
export const LOCAL_SERVER = 'master';
