/**
 * The DNS name every master certificate carries; clients verify it whatever address they dial.
 * Its own module so a client (the CLI) can name it without loading the PKI code.
 */
export const MASTER_TLS_NAME = 'spoke-master';
