"""An index directory on disk: snapshots, generations, the writer lock, the write log, rollback."""
