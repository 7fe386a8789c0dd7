using System.Diagnostics;
using System.Reflection;

namespace Raft;

/// <summary>
/// The names under which the library publishes its metrics (<see cref="System.Diagnostics.Metrics.Meter"/>)
/// and traces (<see cref="ActivitySource"/>), and the tag names they carry. Subscribe to them by name:
/// <c>AddMeter(RaftTelemetry.MeterName)</c> and <c>AddSource(RaftTelemetry.ActivitySourceName)</c>
/// with OpenTelemetry, or <c>dotnet-counters monitor --counters Raft.Node</c>.
/// </summary>
/// <remarks>
/// <para>Every node has a meter of its own (created through the <see cref="System.Diagnostics.Metrics.IMeterFactory"/> passed to the <see cref="RaftNode"/> constructor
/// when the host gives one), named <see cref="MeterName"/>, versioned <see cref="Version"/> and
/// tagged <see cref="NodeIdTag"/> = the node's id, so several nodes in one process stay apart.
/// Instruments, units and tags are listed in docs/observability.md.</para>
/// <para>Tracing costs nothing while no listener samples <see cref="ActivitySourceName"/>: every
/// span is started with <see cref="ActivitySource.StartActivity(string, ActivityKind)"/>, which
/// returns null then, and the node skips the work that would feed it.</para>
/// </remarks>
public static class RaftTelemetry
{
    /// <summary>The name of every node's <see cref="System.Diagnostics.Metrics.Meter"/>: "Raft.Node".</summary>
    public const string MeterName = "Raft.Node";

    /// <summary>The name of the library's <see cref="ActivitySource"/>: "Raft.Node".</summary>
    public const string ActivitySourceName = "Raft.Node";

    /// <summary>The tag every instrument of a node's meter carries (through the meter's tags), and every span: the node's id.</summary>
    public const string NodeIdTag = "raft.node.id";

    /// <summary>The tag naming the other node a measurement is about (a follower, a transport peer).</summary>
    public const string PeerIdTag = "raft.peer.id";

    /// <summary>The tag naming a role (<see cref="RaftRole"/>, as its name).</summary>
    public const string RoleTag = "raft.role";

    /// <summary>The tag naming a message type (the <see cref="RaftMessage"/> subclass's name).</summary>
    public const string MessageTypeTag = "raft.message.type";

    /// <summary>The tag saying why a transport dropped a message.</summary>
    public const string DropReasonTag = "raft.drop.reason";

    /// <summary>
    /// The version the meter and the activity source are created with: the library's version (its
    /// informational version without the source revision), so a dashboard can tell which release
    /// produced the data.
    /// </summary>
    public static string Version { get; } = ReadVersion();

    /// <summary>The activity source every node traces through (shared: spans carry <see cref="NodeIdTag"/>).</summary>
    internal static ActivitySource Source { get; } = new(ActivitySourceName, Version);

    private static string ReadVersion()
    {
        var assembly = typeof(RaftTelemetry).Assembly;
        var informational = assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion;
        if (!string.IsNullOrEmpty(informational))
        {
            var plus = informational.IndexOf('+', StringComparison.Ordinal);
            return plus < 0 ? informational : informational[..plus];
        }
        return assembly.GetName().Version?.ToString() ?? "0.0.0";
    }
}
