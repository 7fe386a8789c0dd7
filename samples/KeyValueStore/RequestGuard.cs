using System.Net;
using Microsoft.Net.Http.Headers;

namespace Raft.Samples.KeyValueStore;

/// <summary>
/// The checks that keep a web page in a browser from using the API: the <c>Host</c> header must
/// name this node (against DNS rebinding), a state-changing request that carries an <c>Origin</c>
/// must come from an allowed origin (against cross-site request forgery), and JSON bodies must be
/// declared as JSON (a cross-site form or a <c>text/plain</c> fetch cannot send
/// <c>application/json</c> without a CORS preflight, which this API never approves).
/// </summary>
internal sealed class RequestGuard
{
    private static readonly string[] LoopbackHosts = ["localhost", "127.0.0.1", "::1"];

    private readonly HashSet<string> _hosts = new(StringComparer.OrdinalIgnoreCase);
    private readonly HashSet<string> _origins = new(StringComparer.OrdinalIgnoreCase);
    private readonly bool _anyHost;
    private readonly bool _anyOrigin;

    public RequestGuard(KvNodeOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        foreach (var host in LoopbackHosts)
            _hosts.Add(host);
        AddHost(options.HttpListen);
        if (options.RaftPeers.TryGetValue(options.Id, out var raft))
            AddHost(raft);
        if (options.HttpPeers.TryGetValue(options.Id, out var http))
            _hosts.Add(Normalize(http.Host));
        foreach (var host in options.AllowedHosts)
        {
            if (host == "*")
                _anyHost = true;
            else
                _hosts.Add(Normalize(host));
        }
        foreach (var origin in options.AllowedOrigins)
        {
            if (origin == "*")
                _anyOrigin = true;
            else
                _origins.Add(origin.TrimEnd('/'));
        }
    }

    /// <summary>The host names accepted (normalized: lower case, IPv6 without brackets), for messages.</summary>
    public IEnumerable<string> Hosts => _anyHost ? ["*"] : _hosts.Order(StringComparer.Ordinal);

    /// <summary>Whether the request's <c>Host</c> names this node. A request without one (HTTP/1.0) passes: browsers always send it.</summary>
    public bool IsAllowedHost(HostString host) =>
        _anyHost || !host.HasValue || string.IsNullOrEmpty(host.Host) || _hosts.Contains(Normalize(host.Host));

    /// <summary>
    /// Whether a request with this <c>Origin</c> may change state: the node's own origin (the
    /// scheme and <c>Host</c> of the request itself), or one of <see cref="KvNodeOptions.AllowedOrigins"/>.
    /// <c>Origin: null</c> (sandboxed frames, local files) is never the node's own.
    /// </summary>
    public bool IsAllowedOrigin(string origin, HttpRequest request)
    {
        if (_anyOrigin || _origins.Contains(origin.TrimEnd('/')))
            return true;
        if (!Uri.TryCreate(origin, UriKind.Absolute, out var uri) || !request.Host.HasValue)
            return false;
        var ownPort = request.Host.Port ?? (request.IsHttps ? 443 : 80);
        return string.Equals(uri.Scheme, request.Scheme, StringComparison.OrdinalIgnoreCase)
            && string.Equals(Normalize(uri.Host), Normalize(request.Host.Host), StringComparison.OrdinalIgnoreCase)
            && uri.Port == ownPort
            && uri.AbsolutePath == "/";
    }

    /// <summary>Whether a method changes state (anything but GET, HEAD, OPTIONS and TRACE).</summary>
    public static bool IsStateChanging(string method) =>
        !(HttpMethods.IsGet(method) || HttpMethods.IsHead(method) || HttpMethods.IsOptions(method) || HttpMethods.IsTrace(method));

    /// <summary>Whether a <c>Content-Type</c> is <c>application/json</c>, with no charset or <c>charset=utf-8</c>; otherwise why not.</summary>
    public static bool IsJson(string? contentType, out string error)
    {
        if (string.IsNullOrWhiteSpace(contentType))
        {
            error = "The request has no Content-Type; send Content-Type: application/json.";
            return false;
        }
        if (!MediaTypeHeaderValue.TryParse(contentType, out var parsed)
            || !parsed.MediaType.Equals("application/json", StringComparison.OrdinalIgnoreCase))
        {
            error = $"The Content-Type is '{contentType}'; send Content-Type: application/json.";
            return false;
        }
        var charset = HeaderUtilities.RemoveQuotes(parsed.Charset);
        if (charset.HasValue && !(charset.Equals("utf-8", StringComparison.OrdinalIgnoreCase) || charset.Equals("utf8", StringComparison.OrdinalIgnoreCase)))
        {
            error = $"The Content-Type is '{contentType}'; the body must be UTF-8 (charset=utf-8, or no charset).";
            return false;
        }
        error = "";
        return true;
    }

    private void AddHost(EndPoint endPoint)
    {
        switch (endPoint)
        {
            case IPEndPoint ip when !ip.Address.Equals(IPAddress.Any) && !ip.Address.Equals(IPAddress.IPv6Any):
                _hosts.Add(Normalize(ip.Address.ToString()));
                break;
            case DnsEndPoint dns:
                _hosts.Add(Normalize(dns.Host));
                break;
        }
    }

    // Host names compare without case; IPv6 literals without brackets.
    private static string Normalize(string host) => host.Trim().TrimStart('[').TrimEnd(']').ToLowerInvariant();
}
