using System.Globalization;
using System.Net;
using System.Text;
using Microsoft.Extensions.Options;

namespace Raft.Hosting;

/// <summary>
/// Checks <see cref="RaftHostingOptions"/> when the host starts (registered with
/// <c>ValidateOnStart</c> by <see cref="RaftServiceCollectionExtensions"/>): every failure names the
/// setting and the value, and all of them are reported at once.
/// </summary>
public sealed class RaftHostingOptionsValidator : IValidateOptions<RaftHostingOptions>
{
    /// <inheritdoc />
    public ValidateOptionsResult Validate(string? name, RaftHostingOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var failures = new List<string>();
        if (options.NodeId <= 0)
            failures.Add($"NodeId is {options.NodeId}; set it to this node's id, a positive key of Members (for example --Raft:NodeId=1).");
        if (options.Members.Count == 0)
            failures.Add(options.Join
                ? "Members is empty; list the running cluster's members as id -> \"host:port\", so that this joining node can reach them."
                : "Members is empty; list every member as id -> \"host:port\", this node included.");
        foreach (var (id, address) in options.Members.OrderBy(m => m.Key))
        {
            if (id <= 0)
                failures.Add($"Members has id {id}; member ids must be positive.");
            try
            {
                TcpTransportOptions.ParseEndPoint(address);
            }
            catch (Exception ex) when (ex is FormatException or ArgumentException)
            {
                failures.Add($"Members:{id} is '{address}', not a usable \"host:port\": {ex.Message}");
            }
        }
        if (options.Join && !options.Members.ContainsKey(options.NodeId) && options.ListenAddress is null)
            failures.Add($"Join is set and Members does not list node {options.NodeId}: set ListenAddress to where this node accepts peers (the address the leader is given when it adds this node).");
        if (!options.Join && options.NodeId > 0 && options.Members.Count > 0 && !options.Members.ContainsKey(options.NodeId))
            failures.Add($"NodeId {options.NodeId} is not a key of Members ({string.Join(", ", options.Members.Keys.Order())}).");
        ValidateListen(options, failures);
        if (string.IsNullOrEmpty(options.ClusterId))
            failures.Add("ClusterId is missing; set the same name on every node of the cluster.");
        else if (Encoding.UTF8.GetByteCount(options.ClusterId) > 255)
            failures.Add($"ClusterId '{options.ClusterId}' is {Encoding.UTF8.GetByteCount(options.ClusterId)} UTF-8 bytes; at most 255 are allowed.");
        ValidateSecret(options, failures);
        if (string.IsNullOrWhiteSpace(options.DataDirectory))
            failures.Add("DataDirectory is missing; set a directory for this node's log and snapshots (one per node).");
        if (failures.Count == 0)
        {
            // The core's own rules (timing, limits), in its words.
            try
            {
                options.ToNodeOptions().Validate();
            }
            catch (ArgumentException ex)
            {
                failures.Add(ex.Message);
            }
        }
        return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
    }

    private static void ValidateListen(RaftHostingOptions options, List<string> failures)
    {
        if (options.ListenAddress is { } listen)
        {
            EndPoint parsed;
            try
            {
                parsed = TcpTransportOptions.ParseEndPoint(listen);
            }
            catch (Exception ex) when (ex is FormatException or ArgumentException)
            {
                failures.Add($"ListenAddress is '{listen}', not a usable \"ip:port\": {ex.Message}");
                return;
            }
            if (parsed is not IPEndPoint)
                failures.Add($"ListenAddress is '{listen}'; it must be an IP address and port (such as 0.0.0.0:7001), not a host name.");
        }
        else if (options.Members.TryGetValue(options.NodeId, out var own))
        {
            try
            {
                if (TcpTransportOptions.ParseEndPoint(own) is not IPEndPoint)
                    failures.Add($"Members:{options.NodeId} (this node) is '{own}', a host name, so it cannot be listened on; set ListenAddress to an IP address and port (such as 0.0.0.0:{own[(own.LastIndexOf(':') + 1)..]}).");
            }
            catch (Exception ex) when (ex is FormatException or ArgumentException)
            {
                // Reported with the members above.
            }
        }
    }

    private static void ValidateSecret(RaftHostingOptions options, List<string> failures)
    {
        bool inline = !string.IsNullOrEmpty(options.ClusterSecret);
        bool file = !string.IsNullOrEmpty(options.ClusterSecretFile);
        if (inline && file)
        {
            failures.Add($"Both ClusterSecret and ClusterSecretFile ('{options.ClusterSecretFile}') are set; set one.");
            return;
        }
        if (!inline && !file)
        {
            if (!options.Insecure)
                failures.Add("No cluster secret: set ClusterSecret (base64) or ClusterSecretFile, the same on every node, or set Insecure to true to run the Raft port unauthenticated.");
            return;
        }
        string source = inline ? "ClusterSecret" : $"ClusterSecretFile '{options.ClusterSecretFile}'";
        byte[]? secret;
        try
        {
            secret = options.ReadSecret();
        }
        catch (FormatException)
        {
            failures.Add($"{source} is not base64 (make a secret with: head -c 32 /dev/urandom | base64).");
            return;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            failures.Add($"{source} cannot be read: {ex.Message}");
            return;
        }
        if (secret is not null && secret.Length < RaftHostingOptions.MinClusterSecretBytes)
            failures.Add(string.Create(CultureInfo.InvariantCulture, $"{source} is {secret.Length} bytes decoded; at least {RaftHostingOptions.MinClusterSecretBytes} are needed (32 random bytes recommended)."));
    }
}
