using System.Buffers;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Http.Features;

namespace Raft.Samples.KeyValueStore;

/// <summary>Parsing and checking of request input: keys from the request target, values, compare-and-swap JSON.</summary>
internal static class KvInput
{
    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    /// <summary>
    /// Reads the key from the request target. It is taken from the raw target and percent-decoded
    /// here (so "%2F" is a '/' in the key and "%25" a '%'), then checked: 1 to 256 UTF-8 bytes, valid
    /// UTF-8, no control characters.
    /// </summary>
    internal static bool TryGetKey(HttpContext context, out string key, out string error)
    {
        key = "";
        byte[] bytes;
        var segment = RawKeySegment(context.Features.Get<IHttpRequestFeature>()?.RawTarget);
        if (segment is not null)
        {
            if (!TryPercentDecode(segment, out bytes))
            {
                error = "The key's percent-encoding is malformed (a '%' must be followed by two hex digits).";
                return false;
            }
        }
        else
        {
            // The router's value (already decoded, except that it keeps "%2F" as is).
            bytes = Encoding.UTF8.GetBytes(context.Request.RouteValues["key"] as string ?? "");
        }
        if (bytes.Length == 0)
        {
            error = "The key is empty: keys are 1 to 256 UTF-8 bytes.";
            return false;
        }
        if (bytes.Length > KvCommand.MaxKeyBytes)
        {
            error = $"The key is {bytes.Length} UTF-8 bytes long; at most {KvCommand.MaxKeyBytes} are allowed.";
            return false;
        }
        if (!TryDecode(bytes, out key))
        {
            error = "The key is not valid UTF-8.";
            return false;
        }
        foreach (var c in key)
        {
            if (char.IsControl(c))
            {
                error = $"The key contains the control character U+{(int)c:X4}; control characters are not allowed in keys.";
                return false;
            }
        }
        error = "";
        return true;
    }

    // "/kv/{segment}" or "/kv/{segment}/cas" in origin form, ASCII only; otherwise null (use the router's value).
    private static string? RawKeySegment(string? rawTarget)
    {
        if (rawTarget is null || !rawTarget.StartsWith("/kv/", StringComparison.Ordinal))
            return null;
        var end = rawTarget.AsSpan().IndexOfAny('?', '#');
        var path = end < 0 ? rawTarget : rawTarget[..end];
        var rest = path[4..];
        var slash = rest.IndexOf('/', StringComparison.Ordinal);
        var segment = slash < 0 ? rest : rest[..slash];
        var tail = slash < 0 ? "" : rest[slash..];
        if (tail is not ("" or "/" or "/cas" or "/cas/") || !Ascii.IsValid(segment) || segment is "." or "..")
            return null;
        return segment;
    }

    internal static bool IsDotSegmentKey(string? rawTarget)
    {
        if (rawTarget is null || !rawTarget.StartsWith("/kv/", StringComparison.Ordinal))
            return false;
        var path = rawTarget.AsSpan(4);
        var end = path.IndexOfAny("/?#");
        var segment = (end < 0 ? path : path[..end]).ToString();
        return TryPercentDecode(segment, out var bytes) && bytes is [(byte)'.'] or [(byte)'.', (byte)'.'];
    }

    private static bool TryPercentDecode(string text, out byte[] bytes)
    {
        var buffer = new ArrayBufferWriter<byte>(Math.Max(1, text.Length));
        for (var i = 0; i < text.Length; i++)
        {
            var c = text[i];
            if (c != '%')
            {
                buffer.GetSpan(1)[0] = (byte)c;
                buffer.Advance(1);
                continue;
            }
            if (i + 2 >= text.Length || !byte.TryParse(text.AsSpan(i + 1, 2), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out var b))
            {
                bytes = [];
                return false;
            }
            buffer.GetSpan(1)[0] = b;
            buffer.Advance(1);
            i += 2;
        }
        bytes = buffer.WrittenSpan.ToArray();
        return true;
    }

    internal static bool TryParseCas(byte[] body, out string? expected, out string value, out string error)
    {
        expected = null;
        value = "";
        try
        {
            using var document = JsonDocument.Parse(body, new JsonDocumentOptions { MaxDepth = 8 });
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                error = $"The body is a JSON {root.ValueKind.ToString().ToLowerInvariant()}, not an object.";
                return false;
            }
            bool sawExpected = false, sawValue = false;
            foreach (var property in root.EnumerateObject())
            {
                switch (property.Name)
                {
                    case "expected" when !sawExpected:
                        sawExpected = true;
                        if (property.Value.ValueKind is not (JsonValueKind.String or JsonValueKind.Null))
                        {
                            error = $"\"expected\" is a JSON {property.Value.ValueKind.ToString().ToLowerInvariant()}; it must be a string or null.";
                            return false;
                        }
                        expected = property.Value.GetString();
                        break;
                    case "value" when !sawValue:
                        sawValue = true;
                        if (property.Value.ValueKind != JsonValueKind.String)
                        {
                            error = $"\"value\" is a JSON {property.Value.ValueKind.ToString().ToLowerInvariant()}; it must be a string.";
                            return false;
                        }
                        value = property.Value.GetString()!;
                        break;
                    case "expected" or "value":
                        error = $"\"{property.Name}\" appears twice.";
                        return false;
                    default:
                        error = $"Unknown property \"{property.Name}\".";
                        return false;
                }
            }
            if (!sawExpected || !sawValue)
            {
                error = !sawExpected ? "\"expected\" is missing (use null to require that the key is absent)." : "\"value\" is missing.";
                return false;
            }
            // JSON escapes can spell lone surrogates, which are not text.
            if (!IsValidText(value) || (expected is not null && !IsValidText(expected)))
            {
                error = "A string is not valid Unicode text (it contains a lone surrogate).";
                return false;
            }
            error = "";
            return true;
        }
        catch (Exception ex) when (ex is JsonException or InvalidOperationException or ArgumentException)
        {
            error = $"The body is not valid JSON: {ex.Message}";
            return false;
        }
    }

    private static bool IsValidText(string text)
    {
        try
        {
            StrictUtf8.GetByteCount(text);
            return true;
        }
        catch (EncoderFallbackException)
        {
            return false;
        }
    }

    internal static bool TryDecode(byte[] utf8, out string text)
    {
        try
        {
            text = StrictUtf8.GetString(utf8);
            return true;
        }
        catch (DecoderFallbackException)
        {
            text = "";
            return false;
        }
    }
}
