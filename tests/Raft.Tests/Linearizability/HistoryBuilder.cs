using Raft.Testing.Linearizability;

namespace Raft.Tests.Linearizability;

/// <summary>Terse constructors for hand-written histories: client, key, values, then [invoke, response].</summary>
internal static class H
{
    public static Operation Put(int client, string key, string value, long invoke, long response) =>
        Operation.Ok(client, KvInput.Put(key, value), KvOutput.None, invoke, response);

    public static Operation Get(int client, string key, string? value, long invoke, long response) =>
        Operation.Ok(client, KvInput.Get(key), KvOutput.ForGet(value), invoke, response);

    public static Operation Delete(int client, string key, long invoke, long response) =>
        Operation.Ok(client, KvInput.Delete(key), KvOutput.None, invoke, response);

    public static Operation Cas(int client, string key, string? expected, string value, bool swapped, long invoke, long response) =>
        Operation.Ok(client, KvInput.Cas(key, expected, value), KvOutput.ForCas(swapped), invoke, response);

    public static Operation UnknownPut(int client, string key, string value, long invoke, long gaveUp = long.MaxValue) =>
        Operation.Unknown(client, KvInput.Put(key, value), invoke, gaveUp);

    public static Operation UnknownCas(int client, string key, string? expected, string value, long invoke, long gaveUp = long.MaxValue) =>
        Operation.Unknown(client, KvInput.Cas(key, expected, value), invoke, gaveUp);

    public static Operation FailedPut(int client, string key, string value, long invoke, long response) =>
        Operation.Failed(client, KvInput.Put(key, value), invoke, response);

    /// <summary>A clean sequential history on other keys, so that tests also check which key is blamed.</summary>
    public static IEnumerable<Operation> Noise(params string[] keys)
    {
        long t = 0;
        foreach (var key in keys)
        {
            yield return Put(9, key, "n1", t, t + 5);
            yield return Get(8, key, "n1", t + 2, t + 9);
            yield return Cas(9, key, "n1", "n2", true, t + 10, t + 15);
            yield return Get(8, key, "n2", t + 16, t + 20);
            t += 3;
        }
    }
}
