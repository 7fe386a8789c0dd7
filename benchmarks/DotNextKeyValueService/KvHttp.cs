using System.Buffers;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Http;

namespace Raft.Benchmarks.KeyValueServices;

/// <summary>A parsed compare-and-swap body: <c>{"expected": string or null, "value": string}</c>.</summary>
internal sealed record CasRequest(byte[]? Expected, byte[] Value);

/// <summary>The request parsing and answers the benchmark key-value services share with the sample's contract.</summary>
internal static class KvHttp
{
    /// <summary>The largest value (and request body) accepted, as in the sample.</summary>
    public const int MaxBodyBytes = 1024 * 1024;

    /// <summary>The longest key accepted, in UTF-8 bytes.</summary>
    public const int MaxKeyBytes = 1024;

    /// <summary>Null when <paramref name="key"/> is acceptable; otherwise why not.</summary>
    public static string? CheckKey(string key) =>
        key.Length == 0 ? "the key is empty"
        : Encoding.UTF8.GetByteCount(key) > MaxKeyBytes ? $"the key is over {MaxKeyBytes} bytes"
        : null;

    /// <summary>
    /// Reads the whole body. Returns null and writes the error answer (400 no body or invalid UTF-8, 413 too big)
    /// when it is not acceptable.
    /// </summary>
    public static async Task<byte[]?> ReadValueAsync(HttpContext context)
    {
        var request = context.Request;
        if (request.ContentLength is null && !request.Headers.TransferEncoding.Any(v => v is not null && v.Contains("chunked", StringComparison.OrdinalIgnoreCase)))
        {
            await ErrorAsync(context, StatusCodes.Status400BadRequest, "a PUT needs a body (Content-Length or chunked)");
            return null;
        }
        if (request.ContentLength > MaxBodyBytes)
        {
            await ErrorAsync(context, StatusCodes.Status413PayloadTooLarge, $"the value is over {MaxBodyBytes} bytes");
            return null;
        }
        var reader = request.BodyReader;
        while (true)
        {
            var read = await reader.ReadAsync(context.RequestAborted);
            if (read.Buffer.Length > MaxBodyBytes)
            {
                reader.AdvanceTo(read.Buffer.Start, read.Buffer.End);
                await ErrorAsync(context, StatusCodes.Status413PayloadTooLarge, $"the value is over {MaxBodyBytes} bytes");
                return null;
            }
            if (read.IsCompleted)
            {
                var value = read.Buffer.ToArray();
                reader.AdvanceTo(read.Buffer.End);
                if (!IsUtf8(value))
                {
                    await ErrorAsync(context, StatusCodes.Status400BadRequest, "the value is not valid UTF-8");
                    return null;
                }
                return value;
            }
            reader.AdvanceTo(read.Buffer.Start, read.Buffer.End);
        }
    }

    /// <summary>Reads and checks a compare-and-swap body; null after writing the error answer (415, 400, 413).</summary>
    public static async Task<CasRequest?> ReadCasAsync(HttpContext context)
    {
        var type = context.Request.ContentType;
        if (type is null || !(type.Equals("application/json", StringComparison.OrdinalIgnoreCase)
            || type.Replace(" ", "", StringComparison.Ordinal).Equals("application/json;charset=utf-8", StringComparison.OrdinalIgnoreCase)))
        {
            await ErrorAsync(context, StatusCodes.Status415UnsupportedMediaType, "a compare-and-swap body must be application/json");
            return null;
        }
        var body = await ReadValueAsync(context);
        if (body is null)
            return null;
        try
        {
            using var json = JsonDocument.Parse(body);
            var root = json.RootElement;
            if (root.ValueKind != JsonValueKind.Object || root.EnumerateObject().Count() != 2
                || !root.TryGetProperty("expected", out var expected) || expected.ValueKind is not (JsonValueKind.String or JsonValueKind.Null)
                || !root.TryGetProperty("value", out var value) || value.ValueKind != JsonValueKind.String)
            {
                await ErrorAsync(context, StatusCodes.Status400BadRequest, "a compare-and-swap body is {\"expected\": string or null, \"value\": string}");
                return null;
            }
            return new CasRequest(
                expected.ValueKind == JsonValueKind.Null ? null : Encoding.UTF8.GetBytes(expected.GetString()!),
                Encoding.UTF8.GetBytes(value.GetString()!));
        }
        catch (JsonException ex)
        {
            await ErrorAsync(context, StatusCodes.Status400BadRequest, $"malformed JSON: {ex.Message}");
            return null;
        }
    }

    /// <summary>200 with the value as text.</summary>
    public static Task ValueAsync(HttpContext context, byte[] value)
    {
        context.Response.StatusCode = StatusCodes.Status200OK;
        context.Response.ContentType = "text/plain; charset=utf-8";
        context.Response.ContentLength = value.Length;
        return context.Response.Body.WriteAsync(value, context.RequestAborted).AsTask();
    }

    /// <summary>409 with the current value (null: absent).</summary>
    public static Task ConflictAsync(HttpContext context, byte[]? current)
    {
        context.Response.StatusCode = StatusCodes.Status409Conflict;
        return context.Response.WriteAsJsonAsync(new Dictionary<string, string?>
        {
            ["error"] = "the current value differs from the expected one",
            ["current"] = current is null ? null : Encoding.UTF8.GetString(current),
        }, context.RequestAborted);
    }

    /// <summary>A JSON error <c>{"error": message}</c> with <paramref name="status"/>.</summary>
    public static Task ErrorAsync(HttpContext context, int status, string message)
    {
        context.Response.StatusCode = status;
        if (status == StatusCodes.Status503ServiceUnavailable)
            context.Response.Headers.RetryAfter = "1";
        return context.Response.WriteAsJsonAsync(new Dictionary<string, string> { ["error"] = message }, context.RequestAborted);
    }

    private static bool IsUtf8(byte[] value)
    {
        try
        {
            _ = new UTF8Encoding(false, true).GetCharCount(value);
            return true;
        }
        catch (DecoderFallbackException)
        {
            return false;
        }
    }
}
