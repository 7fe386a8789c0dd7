using FsCheck.Xunit;
using Raft.Testing;
using static Raft.Tests.Storage.LogAssert;

namespace Raft.Tests.Storage;

/// <summary>
/// FsCheck: random sequences of appends, truncating appends, compactions, resets, hard-state saves
/// and reopens leave <see cref="FileLogStore"/> in the same state as <see cref="InMemoryLogStore"/>,
/// the model. Tiny segments and a tiny cache make every operation cross files and mix cache and disk.
/// </summary>
public sealed class FileLogStoreModelProperties
{
    private const int MaxOperations = 40;

    [Property(MaxTest = 100)]
    public async Task File_store_agrees_with_the_in_memory_model(int[] operations, byte cacheEntries)
    {
        ArgumentNullException.ThrowIfNull(operations);
        using var directory = new TempDirectory();
        var options = new FileLogStoreOptions { SegmentSize = 160, CacheBytes = (cacheEntries % 6) * 40 };
        var model = new InMemoryLogStore();
        var store = await FileLogStore.OpenAsync(directory.Path, options);
        try
        {
            long term = 1;
            foreach (var raw in operations.Take(MaxOperations))
            {
                var op = (uint)raw;
                var arg = op / 10;
                switch (op % 10)
                {
                    case 0:
                    case 1:
                    case 2:
                        {
                            // Append 1..4 entries at the end.
                            var batch = Batch(model.LastIndex + 1, 1 + (int)(arg % 4), term, arg);
                            await model.AppendAsync(batch);
                            await store.AppendAsync(batch);
                            break;
                        }
                    case 3:
                        {
                            // A new leader's entries replace a suffix.
                            if (model.LastIndex < model.FirstIndex)
                                break;
                            term++;
                            var start = model.FirstIndex + (arg % (model.LastIndex - model.FirstIndex + 1));
                            var batch = Batch(start, 1 + (int)(arg % 3), term, arg);
                            await model.AppendAsync(batch);
                            await store.AppendAsync(batch);
                            break;
                        }
                    case 4:
                    case 8:
                        {
                            var point = model.FirstIndex - 1 + (arg % (model.LastIndex - model.FirstIndex + 2));
                            await model.CompactAsync(point);
                            await store.CompactAsync(point);
                            break;
                        }
                    case 5:
                    case 6:
                        await store.DisposeAsync();
                        store = await FileLogStore.OpenAsync(directory.Path, options);
                        break;
                    case 7:
                        {
                            var state = new HardState(term, (int)(arg % 5), model.LastIndex);
                            await model.SaveHardStateAsync(state);
                            await store.SaveHardStateAsync(state);
                            break;
                        }
                    default:
                        {
                            // Rarely: install a snapshot somewhere around the current log.
                            if (arg % 4 != 0)
                                goto case 0;
                            term++;
                            var index = Math.Max(0, model.LastIndex + ((long)(arg % 9) - 4));
                            await model.ResetAsync(index, term);
                            await store.ResetAsync(index, term);
                            break;
                        }
                }
                SameState(model, store);
                var from = model.FirstIndex + (arg % (model.LastIndex - model.FirstIndex + 2));
                var maxBytes = (long)(arg % 200);
                Equal(Read(model, from, model.LastIndex + 1, maxBytes), Read(store, from, model.LastIndex + 1, maxBytes));
            }
            await store.DisposeAsync();
            store = await FileLogStore.OpenAsync(directory.Path, options);
            SameState(model, store);
        }
        finally
        {
            await store.DisposeAsync();
        }
    }

    private static LogEntry[] Batch(long first, int count, long term, uint seed)
    {
        var batch = new LogEntry[count];
        for (var i = 0; i < count; i++)
            batch[i] = Entry(first + i, term, (int)((seed + (uint)i) % 50));
        return batch;
    }
}
