using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using Raft.Testing.Linearizability;

namespace Raft.Tests.Linearizability;

/// <summary>
/// FsCheck: histories of an atomic map under random concurrent interleavings (with unknown and failed
/// outcomes) are linearizable, and corrupting a single read in them (to a value never written, or
/// to a value overwritten before the read began) is always detected, on the right key.
/// </summary>
public sealed class LinearizabilityProperties
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);

    private static readonly Gen<SimulationSettings> Settings =
        from seed in Gen.Choose(0, int.MaxValue)
        from clients in Gen.Choose(1, 10)
        from operations in Gen.Choose(0, 250)
        from keys in Gen.Choose(1, 4)
        from unknown in Gen.Elements(0, 0, 5, 20)
        from failed in Gen.Elements(0, 0, 5)
        from fewValues in Gen.Elements(false, true)
        select new SimulationSettings(seed, clients, operations, keys, unknown, failed, fewValues);

    [Property(MaxTest = 200)]
    public Property Histories_of_an_atomic_map_are_linearizable() =>
        Prop.ForAll(Settings.ToArbitrary(), settings =>
        {
            var history = RegisterSimulation.Run(settings);
            var result = LinearizabilityChecker.Check(history, Timeout);
            Assert.True(result.IsLinearizable, $"{settings}\n{result}");
        });

    [Property(MaxTest = 200)]
    public Property A_read_of_a_value_never_written_is_detected() =>
        Prop.ForAll(Settings.ToArbitrary(), Gen.Choose(0, int.MaxValue).ToArbitrary(), (settings, pick) =>
        {
            var history = RegisterSimulation.Run(settings);
            var reads = Enumerable.Range(0, history.Count)
                .Where(i => history[i].Input.Kind == KvOperationKind.Get && history[i].Outcome == OperationOutcome.Ok)
                .ToArray();
            if (reads.Length == 0)
                return;
            var victim = reads[pick % reads.Length];
            var read = history[victim];
            history[victim] = Operation.Ok(read.ClientId, read.Input, KvOutput.ForGet("never-written"), read.InvokeTimestamp, read.ResponseTimestamp);

            var result = LinearizabilityChecker.Check(history, Timeout);
            Assert.False(result.IsLinearizable, $"{settings}\n{result}");
            var failure = Assert.IsType<LinearizabilityFailure>(result.Failure);
            Assert.Equal(read.Key, failure.Key);
        });

    [Property(MaxTest = 200)]
    public Property A_stale_read_is_detected() =>
        Prop.ForAll(Settings.ToArbitrary(), Gen.Choose(0, int.MaxValue).ToArbitrary(), (settings, pick) =>
        {
            // Values are unique, so a read of x after a write W of x and a later overwrite, both
            // acknowledged before the read began, cannot be explained, and the search must prove it.
            var history = RegisterSimulation.Run(settings with { FewValues = false });
            if (RegisterSimulation.MakeStaleRead(history, pick) is not { } original)
                return;

            var result = LinearizabilityChecker.Check(history, Timeout);
            Assert.False(result.IsLinearizable, $"{settings}\n{result}");
            var failure = Assert.IsType<LinearizabilityFailure>(result.Failure);
            Assert.Equal(original.Key, failure.Key);
            Assert.NotEmpty(failure.LinearizedPrefix);
        });

    [Property(MaxTest = 100)]
    public Property A_read_of_an_overwritten_value_long_after_is_detected() =>
        Prop.ForAll(Settings.ToArbitrary(), settings =>
        {
            // Append, after everything settled, a read that claims a value the key no longer holds.
            var history = RegisterSimulation.Run(settings with { UnknownPercent = 0 });
            var end = history.Count == 0 ? 0 : history.Max(o => o.ResponseTimestamp) + 10;
            history.Add(Operation.Ok(99, KvInput.Put("k0", "final"), KvOutput.None, end, end + 1));
            history.Add(Operation.Ok(99, KvInput.Get("k0"), KvOutput.ForGet("final"), end + 2, end + 3));
            history.Add(Operation.Ok(98, KvInput.Get("k0"), KvOutput.ForGet(null), end + 4, end + 5));

            var result = LinearizabilityChecker.Check(history, Timeout);
            Assert.False(result.IsLinearizable, $"{settings}\n{result}");
            Assert.Equal("k0", result.Failure?.Key);
        });
}
