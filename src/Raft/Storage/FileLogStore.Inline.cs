namespace Raft;

public sealed partial class FileLogStore
{
    // Where the file work of a write or of recovery runs: on the thread pool (fsync blocks), or inline
    // on the caller's thread under FileLogStoreOptions.InlineIo, for the deterministic simulator that
    // runs every node on one thread (the task is then complete, or the work has thrown, on return).
    // Any file work the store starts must go through here, or the simulator sees a thread hop.
    private Task RunIo(Action work, CancellationToken cancellationToken)
    {
        if (!_options.InlineIo)
            return Task.Run(work, cancellationToken);
        cancellationToken.ThrowIfCancellationRequested();
        work();
        return Task.CompletedTask;
    }
}
