using Raft.Testing.Linearizability;

namespace Raft.Tests.Linearizability;

/// <summary>Parameters of a simulated run of clients against an atomic key-value map.</summary>
/// <param name="Seed">Drives every choice.</param>
/// <param name="Clients">Concurrent clients, each with at most one operation in flight.</param>
/// <param name="Operations">Operations invoked in total.</param>
/// <param name="Keys">Distinct keys.</param>
/// <param name="UnknownPercent">Share of operations whose outcome the client does not learn.</param>
/// <param name="FailedPercent">Share of operations rejected without effect.</param>
/// <param name="FewValues">Write values from a tiny set (repeated values), instead of unique ones.</param>
internal sealed record SimulationSettings(int Seed, int Clients, int Operations, int Keys, int UnknownPercent = 0, int FailedPercent = 0, bool FewValues = false);

/// <summary>
/// Produces histories that are linearizable by construction: a discrete-event interleaving of clients
/// whose operations each take effect atomically on a plain dictionary at one instant strictly between
/// their invocation and their response. Operations with an unknown outcome took effect inside their
/// interval, or later (even after the client gave up), or never.
/// </summary>
internal static class RegisterSimulation
{
    private static readonly string[] FewValues = ["a", "b", "c"];

    private enum Phase { Idle, Invoked, Applied }

    private enum Fate { Ok, Failed, UnknownApplied, UnknownLate, UnknownLost }

    public static List<Operation> Run(SimulationSettings settings)
    {
        var random = new Random(settings.Seed);
        var store = new Dictionary<string, string>(StringComparer.Ordinal);
        var history = new List<Operation>(settings.Operations);
        var clients = new Client[settings.Clients];
        for (var i = 0; i < clients.Length; i++)
            clients[i] = new Client();
        var late = new List<KvInput>();
        var started = 0;
        var nextValue = 0;
        long time = 0;
        var active = new List<int>(clients.Length);

        while (true)
        {
            active.Clear();
            for (var i = 0; i < clients.Length; i++)
            {
                if (clients[i].Phase != Phase.Idle || started < settings.Operations)
                    active.Add(i);
            }
            if (active.Count == 0)
                break; // late operations never applied simply never took effect
            time += random.Next(1, 4);
            if (late.Count > 0 && random.Next(6) == 0)
            {
                var index = random.Next(late.Count);
                Apply(store, late[index]);
                late.RemoveAt(index);
                continue;
            }

            var id = active[random.Next(active.Count)];
            var client = clients[id];
            switch (client.Phase)
            {
                case Phase.Idle:
                    started++;
                    client.Input = RandomInput(random, store, settings, ref nextValue);
                    client.Invoke = time;
                    var roll = random.Next(100);
                    client.Fate = roll < settings.FailedPercent ? Fate.Failed
                        : roll < settings.FailedPercent + settings.UnknownPercent ? (Fate)(2 + random.Next(3))
                        : Fate.Ok;
                    client.Phase = Phase.Invoked;
                    break;
                case Phase.Invoked:
                    if (client.Fate is Fate.Ok or Fate.UnknownApplied)
                        client.Output = Apply(store, client.Input!);
                    else if (client.Fate == Fate.UnknownLate)
                        late.Add(client.Input!);
                    client.Phase = Phase.Applied;
                    break;
                default:
                    time++; // the response strictly follows the effect
                    history.Add(client.Fate switch
                    {
                        Fate.Ok => Operation.Ok(id, client.Input!, client.Output, client.Invoke, time),
                        Fate.Failed => Operation.Failed(id, client.Input!, client.Invoke, time),
                        _ => Operation.Unknown(id, client.Input!, client.Invoke, time),
                    });
                    client.Phase = Phase.Idle;
                    break;
            }
        }
        return history;
    }

    /// <summary>
    /// Makes one acknowledged get of a history with unique values stale: it now reads the value of an
    /// acknowledged write that another acknowledged write overwrote before the get began, which no
    /// linearization explains. <paramref name="pick"/> chooses among the candidates.
    /// </summary>
    /// <returns>The get as it was, or <see langword="null"/> when the history has no candidate.</returns>
    public static Operation? MakeStaleRead(List<Operation> history, int pick)
    {
        static bool Writes(Operation o) => o.Outcome == OperationOutcome.Ok && o.Input.Kind switch
        {
            KvOperationKind.Put or KvOperationKind.Delete => true,
            KvOperationKind.Cas => o.Output.Swapped,
            _ => false,
        };
        // For each acknowledged write of a value: when the first overwrite invoked after it ended.
        var writesByKey = history.Where(Writes).ToLookup(o => o.Key);
        var overwritten = (
            from write in history
            where Writes(write) && write.Input.Kind != KvOperationKind.Delete
            let end = writesByKey[write.Key]
                .Where(over => over.InvokeTimestamp > write.ResponseTimestamp)
                .Select(over => over.ResponseTimestamp)
                .DefaultIfEmpty(long.MaxValue)
                .Min()
            select (write.Key, write.Input.Value, end)).ToLookup(w => w.Key);
        var stale = (
            from read in Enumerable.Range(0, history.Count)
            where history[read].Input.Kind == KvOperationKind.Get && history[read].Outcome == OperationOutcome.Ok
            from w in overwritten[history[read].Key]
            where w.end < history[read].InvokeTimestamp
            select (read, value: w.Value)).ToArray();
        if (stale.Length == 0)
            return null;
        var (victim, value) = stale[(int)((uint)pick % (uint)stale.Length)];
        var original = history[victim];
        history[victim] = Operation.Ok(original.ClientId, original.Input, KvOutput.ForGet(value), original.InvokeTimestamp, original.ResponseTimestamp);
        return original;
    }

    private static KvInput RandomInput(Random random, Dictionary<string, string> store, SimulationSettings settings, ref int nextValue)
    {
        var key = "k" + random.Next(settings.Keys);
        string NewValue(ref int counter) => settings.FewValues ? FewValues[random.Next(FewValues.Length)] : "v" + counter++;
        var roll = random.Next(100);
        if (roll < 35)
            return KvInput.Put(key, NewValue(ref nextValue));
        if (roll < 70)
            return KvInput.Get(key);
        if (roll < 80)
            return KvInput.Delete(key);
        // CAS: usually expect what the key holds at invocation (it may change before the CAS takes effect).
        var expected = random.Next(4) switch
        {
            0 => null,
            1 => settings.FewValues ? FewValues[random.Next(FewValues.Length)] : "v" + random.Next(Math.Max(1, nextValue)),
            _ => store.GetValueOrDefault(key),
        };
        return KvInput.Cas(key, expected, NewValue(ref nextValue));
    }

    private static KvOutput Apply(Dictionary<string, string> store, KvInput input)
    {
        switch (input.Kind)
        {
            case KvOperationKind.Put:
                store[input.Key] = input.Value!;
                return KvOutput.None;
            case KvOperationKind.Get:
                return KvOutput.ForGet(store.GetValueOrDefault(input.Key));
            case KvOperationKind.Delete:
                store.Remove(input.Key);
                return KvOutput.None;
            default:
                var swapped = store.GetValueOrDefault(input.Key) == input.Expected;
                if (swapped)
                    store[input.Key] = input.Value!;
                return KvOutput.ForCas(swapped);
        }
    }

    private sealed class Client
    {
        public Phase Phase { get; set; }

        public KvInput? Input { get; set; }

        public long Invoke { get; set; }

        public Fate Fate { get; set; }

        public KvOutput Output { get; set; }
    }
}
