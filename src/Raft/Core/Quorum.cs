namespace Raft;

/// <summary>Majority arithmetic. Pure functions, property-tested against naive versions.</summary>
internal static class Quorum
{
    /// <summary>The number of members that makes a majority of <paramref name="members"/>.</summary>
    public static int Majority(int members) => members / 2 + 1;

    /// <summary>
    /// The highest index that a majority of members have reached: sort descending and take the
    /// majority-th value. <paramref name="matchIndexes"/> is used as scratch space and reordered.
    /// </summary>
    public static long CommittedIndex(Span<long> matchIndexes)
    {
        if (matchIndexes.Length == 0)
            return 0;
        matchIndexes.Sort();
        // Ascending order: the element at Length - Majority is reached by Majority members.
        return matchIndexes[matchIndexes.Length - Majority(matchIndexes.Length)];
    }

    /// <summary>Whether the votes decide the election: a majority granted, a majority rejected, or not yet.</summary>
    public static VoteResult Tally(int members, int granted, int rejected)
    {
        var majority = Majority(members);
        if (granted >= majority)
            return VoteResult.Won;
        if (rejected >= majority)
            return VoteResult.Lost;
        return VoteResult.Pending;
    }
}

/// <summary>The state of an election's count.</summary>
internal enum VoteResult
{
    Pending,
    Won,
    Lost,
}
