using FsCheck;
using FsCheck.Xunit;

namespace Raft.Tests.Core;

/// <summary>
/// <see cref="Quorum"/> against naive definitions (etcd quorum/quick_test.go: the optimized
/// computation equals a dumb one).
/// </summary>
public sealed class QuorumProperties
{
    /// <summary>The naive definition: the largest N such that at least a majority of match indexes are &gt;= N.</summary>
    private static long NaiveCommittedIndex(long[] matches)
    {
        if (matches.Length == 0)
            return 0;
        var majority = matches.Length / 2 + 1;
        long best = 0;
        foreach (var candidate in matches.Append(0))
        {
            if (matches.Count(m => m >= candidate) >= majority && candidate > best)
                best = candidate;
        }
        return best;
    }

    // Raft paper §5.3/§5.4.2: "there exists an N such that N > commitIndex, a majority of
    // matchIndex[i] >= N": the optimized sort-and-pick equals the definition.
    [Property(MaxTest = 1000)]
    public bool CommittedIndex_IsTheLargestIndexAMajorityHasReached(NonNegativeInt[] matchIndexes)
    {
        var matches = matchIndexes.Select(m => (long)m.Get).ToArray();
        var expected = NaiveCommittedIndex(matches);

        var actual = Quorum.CommittedIndex(matches.ToArray());

        return actual == expected;
    }

    // The same, with few distinct values, so ties (equal match indexes) are common.
    [Property(MaxTest = 1000)]
    public bool CommittedIndex_HandlesTies(byte[] raw)
    {
        var matches = raw.Select(b => (long)(b % 4)).ToArray();

        return Quorum.CommittedIndex(matches.ToArray()) == NaiveCommittedIndex(matches);
    }

    [Fact]
    public void CommittedIndex_Examples()
    {
        Assert.Equal(0, Quorum.CommittedIndex(Array.Empty<long>()));
        Assert.Equal(7, Quorum.CommittedIndex(new long[] { 7 }));
        Assert.Equal(2, Quorum.CommittedIndex(new long[] { 5, 2 }));
        Assert.Equal(5, Quorum.CommittedIndex(new long[] { 5, 2, 9 }));
        Assert.Equal(2, Quorum.CommittedIndex(new long[] { 1, 2, 3, 4 }));
        Assert.Equal(3, Quorum.CommittedIndex(new long[] { 1, 2, 3, 4, 5 }));
    }

    [Property(MaxTest = 500)]
    public bool Majority_IsTheSmallestCountMoreThanHalf(PositiveInt members)
    {
        var n = members.Get;
        var majority = Quorum.Majority(n);
        return 2 * majority > n && 2 * (majority - 1) <= n;
    }

    // Raft paper §5.2: won with a majority of grants, lost with a majority of refusals, pending otherwise.
    [Property(MaxTest = 1000)]
    public bool Tally_MatchesTheDefinition(PositiveInt size, NonNegativeInt grantedRaw, NonNegativeInt rejectedRaw)
    {
        var members = size.Get % 9 + 1;
        var granted = grantedRaw.Get % (members + 1);
        var rejected = rejectedRaw.Get % (members - granted + 1);
        var majority = members / 2 + 1;
        var expected = granted >= majority ? VoteResult.Won : rejected >= majority ? VoteResult.Lost : VoteResult.Pending;

        return Quorum.Tally(members, granted, rejected) == expected;
    }
}
