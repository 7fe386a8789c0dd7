using System.Globalization;
using System.Net;

namespace Raft.Benchmarks.KeyValueServices;

/// <summary>
/// The command line shared by the benchmark key-value services: <c>--name value</c> or
/// <c>--name=value</c>, each option at most once, only the names the service knows.
/// </summary>
internal sealed class NodeArgs
{
    private readonly Dictionary<string, string> _values;

    private NodeArgs(Dictionary<string, string> values) => _values = values;

    /// <summary>Parses <paramref name="args"/>; <paramref name="required"/> must all be present.</summary>
    /// <exception cref="FormatException">An unknown, repeated, valueless or missing option (the message says which).</exception>
    public static NodeArgs Parse(IReadOnlyList<string> args, IReadOnlyCollection<string> known, IReadOnlyCollection<string> required)
    {
        var values = new Dictionary<string, string>(StringComparer.Ordinal);
        for (var i = 0; i < args.Count; i++)
        {
            var arg = args[i];
            if (!arg.StartsWith("--", StringComparison.Ordinal))
                throw new FormatException($"unexpected argument '{arg}': options are written --name value.");
            var name = arg[2..];
            string? value = null;
            var equals = name.IndexOf('=', StringComparison.Ordinal);
            if (equals >= 0)
            {
                value = name[(equals + 1)..];
                name = name[..equals];
            }
            if (!known.Contains(name))
                throw new FormatException($"unknown option --{name}.");
            if (value is null)
            {
                if (i + 1 >= args.Count)
                    throw new FormatException($"option --{name} needs a value.");
                value = args[++i];
            }
            if (!values.TryAdd(name, value))
                throw new FormatException($"option --{name} is given twice.");
        }
        foreach (var name in required)
        {
            if (!values.ContainsKey(name))
                throw new FormatException($"option --{name} is required.");
        }
        return new NodeArgs(values);
    }

    public string? this[string name] => _values.GetValueOrDefault(name);

    public int Id(string name = "id") =>
        int.TryParse(_values[name], NumberStyles.None, CultureInfo.InvariantCulture, out var id) && id > 0
            ? id
            : throw new FormatException($"--{name} must be a positive integer, not '{_values[name]}'.");

    /// <summary>An <c>IP:PORT</c> address (<c>localhost</c> means 127.0.0.1).</summary>
    public static IPEndPoint EndPoint(string text, string option)
    {
        var colon = text.LastIndexOf(':');
        if (colon <= 0
            || !int.TryParse(text.AsSpan(colon + 1), NumberStyles.None, CultureInfo.InvariantCulture, out var port) || port is <= 0 or > 65535)
        {
            throw new FormatException($"{option}: '{text}' is not HOST:PORT.");
        }
        var host = text[..colon].Trim('[', ']');
        if (string.Equals(host, "localhost", StringComparison.OrdinalIgnoreCase))
            return new IPEndPoint(IPAddress.Loopback, port);
        return IPAddress.TryParse(host, out var ip)
            ? new IPEndPoint(ip, port)
            : throw new FormatException($"{option}: '{host}' is not an IP address or localhost.");
    }

    /// <summary><c>1=HOST:PORT,2=HOST:PORT,...</c>.</summary>
    public static SortedDictionary<int, IPEndPoint> Members(string text, string option)
    {
        var members = new SortedDictionary<int, IPEndPoint>();
        foreach (var part in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var equals = part.IndexOf('=', StringComparison.Ordinal);
            if (equals <= 0 || !int.TryParse(part.AsSpan(0, equals), NumberStyles.None, CultureInfo.InvariantCulture, out var id) || id <= 0)
                throw new FormatException($"{option}: '{part}' is not ID=HOST:PORT.");
            if (!members.TryAdd(id, EndPoint(part[(equals + 1)..], option)))
                throw new FormatException($"{option} lists id {id} twice.");
        }
        return members.Count > 0 ? members : throw new FormatException($"{option} lists no member.");
    }
}
