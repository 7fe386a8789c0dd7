using Microsoft.Extensions.Time.Testing;
using Raft.Testing.Linearizability;

namespace Raft.Tests.Linearizability;

public sealed class HistoryRecorderTests
{
    [Fact]
    public void Records_invocation_and_completion_timestamps_and_outcomes()
    {
        var time = new FakeTimeProvider();
        var recorder = new HistoryRecorder(time);
        var put = recorder.Invoke(1, KvInput.Put("k", "v"));
        var t0 = time.GetTimestamp();
        time.Advance(TimeSpan.FromMilliseconds(5));
        var get = recorder.Invoke(2, KvInput.Get("k"));
        var cas = recorder.Invoke(3, KvInput.Cas("k", null, "w"));
        var lost = recorder.Invoke(4, KvInput.Delete("k"));
        var rejected = recorder.Invoke(5, KvInput.Put("k", "nope"));
        var pending = recorder.Invoke(6, KvInput.Put("k", "later"));
        time.Advance(TimeSpan.FromMilliseconds(5));
        recorder.Complete(put);
        recorder.CompleteGet(get, "v");
        recorder.CompleteCas(cas, false);
        recorder.CompleteUnknown(lost);
        recorder.CompleteFailed(rejected);
        var t1 = time.GetTimestamp();

        var ops = recorder.Operations;
        Assert.Equal(6, recorder.Count);
        Assert.Equal([0, 1, 2, 3, 4, 5], new[] { put, get, cas, lost, rejected, pending }.Select(h => h.Index));
        Assert.Equal(t0, ops[0].InvokeTimestamp);
        Assert.Equal(t1, ops[0].ResponseTimestamp);
        Assert.Equal(OperationOutcome.Ok, ops[1].Outcome);
        Assert.Equal("v", ops[1].Output.Value);
        Assert.False(ops[2].Output.Swapped);
        Assert.Equal(OperationOutcome.Unknown, ops[3].Outcome);
        Assert.Equal(OperationOutcome.Failed, ops[4].Outcome);
        Assert.Equal(OperationOutcome.Unknown, ops[5].Outcome);
        Assert.Equal(long.MaxValue, ops[5].ResponseTimestamp);
        Assert.Equal([1, 2, 3, 4, 5, 6], ops.Select(o => o.ClientId));

        var result = LinearizabilityChecker.Check(ops);
        Assert.True(result.IsLinearizable, result.ToString());
    }

    [Fact]
    public void Completing_twice_with_a_foreign_handle_or_the_wrong_output_throws()
    {
        var recorder = new HistoryRecorder();
        var handle = recorder.Invoke(1, KvInput.Get("k"));
        recorder.CompleteGet(handle, null);
        Assert.Throws<InvalidOperationException>(() => recorder.CompleteUnknown(handle));
        Assert.Throws<ArgumentException>(() => new HistoryRecorder().Complete(handle));
        Assert.Throws<ArgumentException>(() => recorder.Complete(default));
        var get = recorder.Invoke(1, KvInput.Get("k"));
        Assert.Throws<InvalidOperationException>(() => recorder.Complete(get));
        Assert.Throws<InvalidOperationException>(() => recorder.CompleteCas(get, true));
        recorder.Complete(get, KvOutput.ForGet("v"));
        Assert.Equal("v", recorder.Operations[1].Output.Value);
    }

    [Fact]
    public void Threads_sharing_a_locked_dictionary_produce_a_linearizable_history()
    {
        const int Clients = 8;
        const int OperationsPerClient = 250;
        var recorder = new HistoryRecorder();
        var store = new Dictionary<string, string>();
        var gate = new Lock();
        var start = new Barrier(Clients);

        // Dedicated threads: blocking pool threads on the barrier would wait for thread injection.
        var workers = Enumerable.Range(0, Clients).Select(client => new Thread(() =>
        {
            var random = new Random(client);
            start.SignalAndWait();
            for (var i = 0; i < OperationsPerClient; i++)
            {
                var key = "k" + random.Next(3);
                var value = $"c{client}-{i}";
                switch (random.Next(4))
                {
                    case 0:
                        {
                            var h = recorder.Invoke(client, KvInput.Put(key, value));
                            lock (gate)
                                store[key] = value;
                            recorder.Complete(h);
                            break;
                        }
                    case 1:
                        {
                            var h = recorder.Invoke(client, KvInput.Get(key));
                            string? read;
                            lock (gate)
                                read = store.GetValueOrDefault(key);
                            recorder.CompleteGet(h, read);
                            break;
                        }
                    case 2:
                        {
                            string? expected;
                            lock (gate)
                                expected = store.GetValueOrDefault(key);
                            Thread.SpinWait(random.Next(50));
                            var h = recorder.Invoke(client, KvInput.Cas(key, expected, value));
                            bool swapped;
                            lock (gate)
                            {
                                swapped = store.GetValueOrDefault(key) == expected;
                                if (swapped)
                                    store[key] = value;
                            }
                            recorder.CompleteCas(h, swapped);
                            break;
                        }
                    default:
                        {
                            var h = recorder.Invoke(client, KvInput.Delete(key));
                            lock (gate)
                                store.Remove(key);
                            recorder.Complete(h);
                            break;
                        }
                }
                if (random.Next(8) == 0)
                    Thread.Yield();
            }
        })).ToArray();
        foreach (var worker in workers)
            worker.Start();
        foreach (var worker in workers)
            worker.Join();

        var history = recorder.Operations;
        Assert.Equal(Clients * OperationsPerClient, history.Count);
        var result = LinearizabilityChecker.Check(history, TimeSpan.FromSeconds(20));
        Assert.True(result.IsLinearizable, result.ToString());
    }
}
