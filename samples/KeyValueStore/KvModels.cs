using System.Text.Json;

namespace Raft.Samples.KeyValueStore;

/// <summary>
/// The body of every error answer: an RFC 9457 problem details object (<c>application/problem+json</c>) with
/// <c>type</c> ("about:blank": the status says it all), <c>title</c> (the status's reason phrase), <c>status</c> and
/// <c>detail</c> (what happened and what to do), plus <c>error</c>, the same text as <c>detail</c>, which clients of
/// earlier versions read.
/// </summary>
public sealed record ErrorResponse(string Type, string Title, int Status, string Detail, string Error)
{
    /// <summary>The problem for <paramref name="status"/> with <paramref name="detail"/>.</summary>
    public static ErrorResponse For(int status, string detail) =>
        new("about:blank", Microsoft.AspNetCore.WebUtilities.ReasonPhrases.GetReasonPhrase(status), status, detail, detail);
}

/// <summary>The body of a 409 from compare-and-swap or increment: the problem (as <see cref="ErrorResponse"/>) and the current value (null: absent).</summary>
public sealed record CasConflict(string Type, string Title, int Status, string Detail, string Error, string? Current)
{
    /// <summary>A 409 with <paramref name="detail"/> and the key's <paramref name="current"/> value.</summary>
    public static CasConflict For(string detail, string? current) =>
        new("about:blank", Microsoft.AspNetCore.WebUtilities.ReasonPhrases.GetReasonPhrase(409), 409, detail, detail, current);
}

/// <summary>The body of <c>POST /sessions</c>: the new exactly-once session's client id, for the <c>Idempotency-Key</c> header.</summary>
public sealed record SessionCreated(long ClientId, string Usage);

/// <summary>A follower's replication state, as the leader sees it.</summary>
/// <param name="Id">The follower.</param>
/// <param name="MatchIndex">The highest log index known to be replicated on it.</param>
/// <param name="Lag">How many entries it is behind the leader's last log index.</param>
public sealed record FollowerStatus(int Id, long MatchIndex, long Lag);

/// <summary>The body of <c>GET /status</c>: <paramref name="Configuration"/> is the configuration in force on the node, <paramref name="IsRemoved"/> whether it does not list the node (it was removed; a node started with <c>--join</c> and not added yet has an empty configuration instead), <paramref name="Join"/> whether the node was started with <c>--join</c>.</summary>
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
    IReadOnlyList<FollowerStatus> Followers,
    ConfigurationView Configuration,
    bool IsRemoved,
    bool Join);

/// <summary>One member of the configuration, in <see cref="ConfigurationView"/>.</summary>
/// <param name="Id">The member's id.</param>
/// <param name="Role">"voter", "learner" or, while joint, "outgoing voter" (a voter of the old half only).</param>
/// <param name="Address">Its Raft address as the configuration records it, or null when none was given.</param>
/// <param name="Outgoing">Whether it votes in the old half of a joint configuration.</param>
/// <param name="MatchIndex">On the leader: the highest index known replicated on it (the leader's own durable last index for itself); otherwise null.</param>
/// <param name="Lag">On the leader: how many entries it is behind the leader's last log index; otherwise null.</param>
public sealed record MemberView(int Id, string Role, string? Address, bool Outgoing, long? MatchIndex, long? Lag);

/// <summary>The cluster configuration in force on a node (in <c>GET /status</c>, <c>GET /cluster/members</c> and the answer of <c>POST /cluster/members</c>).</summary>
/// <param name="Joint">Whether a change of voters is under way (C(old,new): decisions need a majority of both halves).</param>
/// <param name="Voters">The (new) voters' ids.</param>
/// <param name="Learners">The learners' ids (they replicate but never vote).</param>
/// <param name="OutgoingVoters">While joint, the old voters' ids; otherwise empty.</param>
/// <param name="Members">Every member with its role and address.</param>
public sealed record ConfigurationView(bool Joint, IReadOnlyList<int> Voters, IReadOnlyList<int> Learners, IReadOnlyList<int> OutgoingVoters, IReadOnlyList<MemberView> Members);

/// <summary>The answer of <c>POST /cluster/members</c>: what happened, and the configuration afterwards.</summary>
public sealed record MembershipResult(string Result, ConfigurationView Configuration);

/// <summary>One member in the body of <c>GET /cluster</c>.</summary>
public sealed record ClusterMember(int Id, string? Url, bool Reachable, JsonElement? Status, string? Error);

/// <summary>The body of <c>GET /cluster</c>: every member's status, gathered by node <paramref name="Self"/>.</summary>
public sealed record ClusterStatus(int Self, IReadOnlyList<ClusterMember> Nodes);
