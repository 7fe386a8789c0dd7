using FsCheck;
using FsCheck.Xunit;
using Raft.Testing;
using static Raft.Tests.Core.CoreHarness;

namespace Raft.Tests.Core;

/// <summary>
/// <see cref="RaftLog"/> (durable store + unstable tail) against a plain list model, under random
/// leader appends, follower truncations, commits, applies and persistence (synchronous, as
/// <see cref="RaftCore"/> does it, and one write in flight, as StableTo allows for).
/// </summary>
public sealed class RaftLogProperties
{
    /// <summary>Reads choices from FsCheck's bytes, so failing cases shrink; 0 once they run out.</summary>
    private sealed class Choices(byte[] data)
    {
        private int _position;

        public bool More => _position < data.Length;

        public int Next(int bound) => bound <= 1 || _position >= data.Length ? 0 : data[_position++] % bound;
    }

    /// <summary>A log under test with its model: the log view as a list (index i at position i - 1).</summary>
    private sealed class Subject
    {
        public Subject(IEnumerable<LogEntry> initial, long committed)
        {
            Store = new InMemoryLogStore();
            var entries = initial.ToArray();
            if (entries.Length > 0)
                Store.AppendAsync(entries).AsTask().GetAwaiter().GetResult();
            Model.AddRange(entries);
            Log = new RaftLog(Store, committed, 0);
            Committed = Math.Min(committed, entries.Length);
        }

        public InMemoryLogStore Store { get; }

        public RaftLog Log { get; }

        public List<LogEntry> Model { get; } = [];

        public long Committed { get; private set; }

        public long Applied { get; private set; }

        public IReadOnlyList<LogEntry>? Pending { get; private set; }

        public long ModelTerm(long index) => index == 0 ? 0 : Model[(int)index - 1].Term;

        public void LeaderAppend(long term, int count)
        {
            for (var i = 0; i < count; i++)
            {
                var entry = Entry(Model.Count + 1, term);
                Log.Append(entry);
                Model.Add(entry);
            }
        }

        /// <summary>What the follower path of RaftCore does with an AppendEntries that passed the consistency check.</summary>
        public void FollowerAppend(long prev, LogEntry[] entries)
        {
            var conflict = entries.Length;
            for (var i = 0; i < entries.Length; i++)
            {
                if (Log.TryTerm(entries[i].Index) != entries[i].Term)
                {
                    conflict = i;
                    break;
                }
            }
            if (conflict < entries.Length)
                Log.TruncateAndAppend(entries, conflict);

            // The model: Figure 2, AppendEntries steps 3 and 4, on a plain list.
            for (var i = 0; i < entries.Length; i++)
            {
                var position = (int)(prev + i);
                if (position < Model.Count && Model[position].Term == entries[i].Term)
                    continue;
                Model.RemoveRange(position, Model.Count - position);
                Model.AddRange(entries.Skip(i));
                break;
            }
        }

        public void PersistAll()
        {
            if (Pending is not null)
                WritePending();
            if (!Log.HasUnstable)
                return;
            var entries = Log.UnstableEntries();
            Store.AppendAsync(entries).AsTask().GetAwaiter().GetResult();
            Log.StableTo(entries[^1].Index, entries[^1].Term);
        }

        public void HandOut()
        {
            if (Pending is null && Log.HasUnstable)
                Pending = Log.UnstableEntries();
        }

        public void WritePending()
        {
            if (Pending is null)
                return;
            Store.AppendAsync(Pending).AsTask().GetAwaiter().GetResult();
            Log.StableTo(Pending[^1].Index, Pending[^1].Term);
            Pending = null;
        }

        public void CommitTo(long index)
        {
            Log.CommitTo(index);
            Committed = Math.Max(Committed, index);
        }

        public void Apply()
        {
            var next = Log.NextCommittedEntries(long.MaxValue);
            Same(Model.Skip((int)Applied).Take((int)(Committed - Applied)), next, "committed entries handed out");
            if (next.Count == 0)
                return;
            Log.ApplyingTo(next[^1].Index);
            Log.AppliedTo(next[^1].Index);
            Applied = next[^1].Index;
        }

        public void Check()
        {
            Assert.Equal(Model.Count, Log.LastIndex);
            Assert.Equal(ModelTerm(Model.Count), Log.LastTerm);
            Assert.Equal(Committed, Log.Committed);
            Assert.Equal(Applied, Log.Applied);
            for (var i = 0; i <= Model.Count; i++)
            {
                if (ModelTerm(i) != Log.TryTerm(i))
                    Assert.Fail($"Term of index {i}: model {ModelTerm(i)}, log {Log.TryTerm(i)}.");
            }
            Assert.Equal(-1, Log.TryTerm(Model.Count + 1));
            var read = new List<LogEntry>();
            Log.Entries(1, Model.Count + 1, long.MaxValue, read);
            Same(Model, read, "log entries");
            // What the log calls durable is in the store, identical.
            var stable = Log.StableLastIndex;
            Assert.InRange(stable, 0, Math.Min(Store.LastIndex, Model.Count));
            var stored = ReadAll(Store);
            Same(Model.Take((int)stable), stored.Take((int)stable), "durable prefix");
            if (!Log.HasUnstable)
                Same(Model, stored, "store without unstable entries");
        }
    }

    private static (long Index, long Term, string Text) Key(LogEntry e) => (e.Index, e.Term, Text(e));

    private static void Same(IEnumerable<LogEntry> expected, IEnumerable<LogEntry> actual, string what)
    {
        var e = expected.Select(Key).ToArray();
        var a = actual.Select(Key).ToArray();
        if (!e.SequenceEqual(a))
            Assert.Fail($"{what}: expected [{string.Join(", ", e)}] but got [{string.Join(", ", a)}].");
    }

    // The log view (store + unstable) always equals the list model; what it calls stable is in the
    // store; committed entries come out in order, once each.
    [Property(MaxTest = 400, EndSize = 200)]
    public void RaftLog_AgreesWithAListModel(byte[] data)
    {
        var choices = new Choices(data);
        var initial = Enumerable.Range(1, choices.Next(4)).Select(i => Entry(i, 1)).ToArray();
        var subject = new Subject(initial, choices.Next(initial.Length + 1));
        long term = 1;
        subject.Check();
        while (choices.More)
        {
            switch (choices.Next(7))
            {
                case 0:
                    subject.LeaderAppend(term, 1 + choices.Next(3));
                    break;
                case 1:
                {
                    // A new leader's entries, from a point after the commit index; sometimes the
                    // message starts earlier with entries the log already holds.
                    var last = subject.Model.Count;
                    var at = subject.Committed + 1 + choices.Next((int)(last - subject.Committed) + 1);
                    var prev = at - 1 - choices.Next((int)(at - 1 - subject.Committed) + 1);
                    term++;
                    var entries = subject.Model.Skip((int)prev).Take((int)(at - 1 - prev))
                        .Concat(Enumerable.Range(0, 1 + choices.Next(3)).Select(i => Entry(at + i, term)))
                        .ToArray();
                    subject.FollowerAppend(prev, entries);
                    break;
                }
                case 2:
                    subject.PersistAll();
                    break;
                case 3:
                    subject.HandOut();
                    break;
                case 4:
                    subject.WritePending();
                    break;
                case 5:
                    subject.CommitTo(subject.Committed + choices.Next((int)(subject.Model.Count - subject.Committed) + 1));
                    break;
                default:
                    subject.Apply();
                    break;
            }
            subject.Check();
        }
        subject.PersistAll();
        subject.Check();
        Assert.False(subject.Log.HasUnstable);
    }

    /// <summary>
    /// Leaders of terms 1..n: the leader of term t starts from a prefix of an earlier leader's log
    /// and appends entries of term t. An entry (index, term) is created once, so the leaders' logs
    /// satisfy Log Matching among themselves, as in Raft.
    /// </summary>
    private static List<LogEntry[]> LeaderHistory(Choices choices, out int[] inherited)
    {
        var leaders = new List<LogEntry[]> { Enumerable.Range(1, 1 + choices.Next(4)).Select(i => Entry(i, 1)).ToArray() };
        var starts = new List<int> { 0 };
        var count = 2 + choices.Next(5);
        for (var term = 2; term <= count; term++)
        {
            var basis = leaders[choices.Next(leaders.Count)];
            var keep = choices.Next(basis.Length + 1);
            var own = 1 + choices.Next(5);
            leaders.Add([.. basis.Take(keep), .. Enumerable.Range(keep + 1, own).Select(i => Entry(i, term))]);
            starts.Add(keep);
        }
        inherited = [.. starts];
        return leaders;
    }

    /// <summary>Log Matching: if two logs hold an entry with the same index and term, they are identical up to it.</summary>
    private static void AssertLogMatching(List<LogEntry> a, IReadOnlyList<LogEntry> b, string what)
    {
        var common = Math.Min(a.Count, b.Count);
        var lastSame = -1;
        for (var i = common - 1; i >= 0; i--)
        {
            if (a[i].Term == b[i].Term)
            {
                lastSame = i;
                break;
            }
        }
        for (var i = 0; i <= lastSame; i++)
            Assert.True(Key(a[i]) == Key(b[i]), $"{what}: both hold ({lastSame + 1}, term {a[lastSame].Term}) but differ at index {i + 1}: {Key(a[i])} vs {Key(b[i])}.");
    }

    // Raft paper §5.3 (Log Matching): two followers fed random AppendEntries — delayed, duplicated,
    // out of order — from a common history of leaders never hold the same (index, term) with
    // different prefixes, and agree with every leader's log the same way.
    [Property(MaxTest = 400, EndSize = 300)]
    public void TwoFollowers_FedByTheSameLeaders_SatisfyLogMatching(byte[] data)
    {
        var choices = new Choices(data);
        var leaders = LeaderHistory(choices, out var inherited);
        var followers = new[] { new Subject([], 0), new Subject([], 0) };
        while (choices.More)
        {
            var follower = followers[choices.Next(2)];
            var op = choices.Next(5);
            if (op == 3)
            {
                follower.PersistAll();
                continue;
            }
            if (op == 4)
            {
                follower.HandOut();
                continue;
            }
            // An AppendEntries from leader t at a moment it held its first `held` entries.
            var t = choices.Next(leaders.Count);
            var log = leaders[t];
            var held = inherited[t] + choices.Next(log.Length - inherited[t] + 1);
            var prev = choices.Next(held + 1);
            var entries = log.Skip(prev).Take(Math.Min(held - prev, 1 + choices.Next(4))).ToArray();
            var prevTerm = prev == 0 ? 0 : log[prev - 1].Term;
            if (follower.Log.MatchTerm(prev, prevTerm))
                follower.FollowerAppend(prev, entries);
            follower.Check();
        }
        foreach (var follower in followers)
        {
            follower.PersistAll();
            follower.Check();
        }

        AssertLogMatching(followers[0].Model, followers[1].Model, "followers 1 and 2");
        foreach (var follower in followers)
        {
            for (var t = 0; t < leaders.Count; t++)
                AssertLogMatching(follower.Model, leaders[t], $"a follower and leader {t + 1}");
        }
    }
}
