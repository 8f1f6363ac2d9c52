mod storage;
mod admission;
mod harness;
mod replication;
