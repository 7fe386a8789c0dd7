using System.Text.Json;

namespace Raft.Samples.KeyValueStore;

/// <summary>The body of every error answer.</summary>
public sealed record ErrorResponse(string Error);

/// <summary>The body of a 409 from compare-and-swap: why, and the current value (null: absent).</summary>
public sealed record CasConflict(string Error, string? Current);

/// <summary>The body of <c>POST /sessions</c>: the new exactly-once session's client id, for the <c>Idempotency-Key</c> header.</summary>
public sealed record SessionCreated(long ClientId, string Usage);

/// <summary>A follower's replication state, as the leader sees it.</summary>
/// <param name="Id">The follower.</param>
/// <param name="MatchIndex">The highest log index known to be replicated on it.</param>
/// <param name="Lag">How many entries it is behind the leader's last log index.</param>
public sealed record FollowerStatus(int Id, long MatchIndex, long Lag);

/// <summary>The body of <c>GET /status</c>.</summary>
public sealed record NodeStatus(
    int Id,
    string Role,
    long Term,
    int LeaderId,
    long CommitIndex,
    long LastApplied,
    long LastLogIndex,
    long LastLogTerm,
    string? HttpUrl,
    string? LeaderUrl,
    int Keys,
    string? Failure,
    IReadOnlyList<FollowerStatus> Followers);

/// <summary>One member in the body of <c>GET /cluster</c>.</summary>
public sealed record ClusterMember(int Id, string? Url, bool Reachable, JsonElement? Status, string? Error);

/// <summary>The body of <c>GET /cluster</c>: every member's status, gathered by node <paramref name="Self"/>.</summary>
public sealed record ClusterStatus(int Self, IReadOnlyList<ClusterMember> Nodes);
