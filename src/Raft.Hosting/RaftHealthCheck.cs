using System.Globalization;
using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace Raft.Hosting;

/// <summary>
/// The health of the host's Raft node: Unhealthy when it is not started, stopped, faulted or removed from the cluster;
/// Degraded when it knows no leader or its state machine lags the commit index by more than
/// <see cref="MaxApplyLag"/> entries; Healthy otherwise. The data carries "role", "term",
/// "leader", "commit" and "applied" (and "fault" when faulted).
/// </summary>
/// <remarks>Register it with <see cref="RaftServiceCollectionExtensions.AddRaftHealthCheck"/>.</remarks>
public sealed class RaftHealthCheck : IHealthCheck
{
    /// <summary>The default of <see cref="MaxApplyLag"/>: 1,000 entries.</summary>
    public const long DefaultMaxApplyLag = 1_000;

    private readonly RaftNodeAccessor _accessor;

    /// <summary>Creates the check.</summary>
    /// <param name="accessor">Where the host's node is found.</param>
    /// <param name="maxApplyLag">The largest commit - applied distance still healthy; at least 0.</param>
    public RaftHealthCheck(RaftNodeAccessor accessor, long maxApplyLag = DefaultMaxApplyLag)
    {
        ArgumentNullException.ThrowIfNull(accessor);
        ArgumentOutOfRangeException.ThrowIfNegative(maxApplyLag);
        _accessor = accessor;
        MaxApplyLag = maxApplyLag;
    }

    /// <summary>The largest number of committed entries not yet applied that is still healthy.</summary>
    public long MaxApplyLag { get; }

    /// <inheritdoc />
    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        if (_accessor.Node is not { } node)
            return Task.FromResult(HealthCheckResult.Unhealthy("The Raft node has not been started."));
        var status = node.Status;
        var data = new Dictionary<string, object>
        {
            ["role"] = status.Role.ToString(),
            ["term"] = status.Term,
            ["leader"] = status.LeaderId,
            ["commit"] = status.CommitIndex,
            ["applied"] = status.AppliedIndex,
        };
        if (status.Fault is { } fault)
        {
            data["fault"] = fault.Message;
            return Task.FromResult(HealthCheckResult.Unhealthy($"Raft node {status.Id} faulted: {fault.Message}", fault, data));
        }
        if (node.Completion.IsCompleted)
            return Task.FromResult(HealthCheckResult.Unhealthy($"Raft node {status.Id} has stopped.", data: data));
        if (status.IsRemoved)
            return Task.FromResult(HealthCheckResult.Unhealthy($"Raft node {status.Id} was removed from the cluster (its configuration no longer lists it); stop it.", data: data));
        if (status.LeaderId == 0)
            return Task.FromResult(HealthCheckResult.Degraded($"Raft node {status.Id} knows no leader in term {status.Term}.", data: data));
        long lag = status.CommitIndex - status.AppliedIndex;
        if (lag > MaxApplyLag)
            return Task.FromResult(HealthCheckResult.Degraded(string.Create(CultureInfo.InvariantCulture, $"Raft node {status.Id} has {lag} committed entries not yet applied (more than {MaxApplyLag})."), data: data));
        return Task.FromResult(HealthCheckResult.Healthy(string.Create(CultureInfo.InvariantCulture, $"Raft node {status.Id} is {status.Role} in term {status.Term}; leader {status.LeaderId}."), data));
    }
}
