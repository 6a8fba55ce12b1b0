import mysql from 'mysql2/promise';
/** Where Debian puts the server and its installer. */
export declare const MARIADBD: string;
export declare const INSTALL_DB: string;
/** A running private server. */
export interface PrivateMariaDb {
    dir: string;
    socket: string;
    port: number;
    /** root@localhost and root@127.0.0.1 have this password. */
    rootPassword: string;
    /** Log of the server (for failure messages). */
    log(): string;
    /** Opens a connection (root unless given another account) over TCP 127.0.0.1. */
    connect(user?: string, password?: string, database?: string): Promise<mysql.Connection>;
    stop(): Promise<void>;
}
/**
 * Installs a data dir under `dir` and starts mariadbd on a free loopback port with
 * --skip-name-resolve (so accounts match by address), then sets the root password.
 * Fails with the package name when the binaries are missing.
 */
export declare function startMariaDb(dir: string, rootPassword: string): Promise<PrivateMariaDb>;
