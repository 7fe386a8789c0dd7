using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using Raft.Testing.Linearizability;

namespace Raft.Tests.Linearizability;

/// <summary>
/// FsCheck, differential: on small histories (linearizable ones from the simulator, and randomly
/// corrupted ones: changed reads, flipped CAS results, moved intervals, outcomes made unknown) the
/// checker agrees with a brute-force search written straight from the definition. This guards the
/// checker's pruning, which a plain "is it linearizable" property could not.
/// </summary>
public sealed class BruteForceAgreementProperties
{
    private static readonly Gen<(SimulationSettings Settings, int Mutations, int MutationSeed)> Cases =
        from seed in Gen.Choose(0, int.MaxValue)
        from clients in Gen.Choose(1, 8)
        from operations in Gen.Choose(0, 16)
        from keys in Gen.Choose(1, 2)
        from unknown in Gen.Elements(0, 15, 30, 45)
        from failed in Gen.Elements(0, 10)
        from fewValues in Gen.Elements(false, true)
        from mutations in Gen.Choose(0, 3)
        from mutationSeed in Gen.Choose(0, int.MaxValue)
        select (new SimulationSettings(seed, clients, operations, keys, unknown, failed, fewValues), mutations, mutationSeed);

    [Property(MaxTest = 500)]
    public Property Checker_agrees_with_brute_force() =>
        Prop.ForAll(Cases.ToArbitrary(), c =>
        {
            var history = RegisterSimulation.Run(c.Settings);
            Mutate(history, c.Mutations, new Random(c.MutationSeed));
            var expected = BruteForce(history);
            var result = LinearizabilityChecker.Check(history, TimeSpan.FromSeconds(20));
            Assert.False(result.TimedOut);
            Assert.True(expected == result.IsLinearizable, $"brute force says {expected}; {c}\n{string.Join('\n', history)}\n{result}");
        });

    private static void Mutate(List<Operation> history, int mutations, Random random)
    {
        string?[] values = ["a", "b", "v0", "v1", "v2", null];
        for (var m = 0; m < mutations && history.Count > 0; m++)
        {
            var i = random.Next(history.Count);
            var o = history[i];
            history[i] = random.Next(4) switch
            {
                0 when o.Input.Kind == KvOperationKind.Get && o.Outcome == OperationOutcome.Ok =>
                    Operation.Ok(o.ClientId, o.Input, KvOutput.ForGet(values[random.Next(values.Length)]), o.InvokeTimestamp, o.ResponseTimestamp),
                1 when o.Input.Kind == KvOperationKind.Cas && o.Outcome == OperationOutcome.Ok =>
                    Operation.Ok(o.ClientId, o.Input, KvOutput.ForCas(!o.Output.Swapped), o.InvokeTimestamp, o.ResponseTimestamp),
                2 => MoveInterval(o, random),
                3 => Operation.Unknown(o.ClientId, o.Input, o.InvokeTimestamp, o.ResponseTimestamp),
                _ => o,
            };
        }
    }

    private static Operation MoveInterval(Operation o, Random random)
    {
        var invoke = random.Next(0, 60);
        var response = invoke + random.Next(0, 30);
        var outcome = o.Outcome == OperationOutcome.Unknown ? OperationOutcome.Ok : o.Outcome;
        return new Operation(o.ClientId, o.Input, invoke, response, outcome, o.Output);
    }

    /// <summary>
    /// The definition, per key: some order of the operations respects real time (an operation may
    /// not precede one that responded before it was invoked; touching intervals overlap), includes
    /// every acknowledged operation, and replays on a register with the observed results. Unknown
    /// operations are optional; failed ones are left out. Memoized on (placed set, value).
    /// </summary>
    private static bool BruteForce(List<Operation> history)
    {
        foreach (var group in history.Where(o => o.Outcome != OperationOutcome.Failed).GroupBy(o => o.Key))
        {
            if (!Search(group.ToList(), 0L, null, []))
                return false;
        }
        return true;
    }

    private static bool Search(List<Operation> ops, long placed, string? value, HashSet<(long, string?)> failed)
    {
        bool Placed(int i) => (placed & (1L << i)) != 0;
        if (Enumerable.Range(0, ops.Count).All(i => Placed(i) || ops[i].Outcome != OperationOutcome.Ok))
            return true;
        if (!failed.Add((placed, value)))
            return false;
        for (var i = 0; i < ops.Count; i++)
        {
            var x = ops[i];
            if (Placed(i) || Enumerable.Range(0, ops.Count).Any(j =>
                    j != i && !Placed(j) && ops[j].Outcome == OperationOutcome.Ok && ops[j].ResponseTimestamp < x.InvokeTimestamp))
            {
                continue;
            }
            var known = x.Outcome == OperationOutcome.Ok;
            var (consistent, next) = x.Input.Kind switch
            {
                KvOperationKind.Put => (true, x.Input.Value),
                KvOperationKind.Delete => (true, null),
                KvOperationKind.Get => (!known || x.Output.Value == value, value),
                _ => value == x.Input.Expected
                    ? (!known || x.Output.Swapped, x.Input.Value)
                    : (!known || !x.Output.Swapped, value),
            };
            if (consistent && Search(ops, placed | (1L << i), next, failed))
                return true;
        }
        return false;
    }
}
