using System.Collections.Concurrent;
using System.Globalization;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Raft.Benchmarks.KeyValueServices;

// The floor: the sample's HTTP contract served from this process's own dictionary. No consensus, no
// disk, no forwarding: every process is independent (node 1 calls itself the leader so that tools
// waiting for one find it). See README.md.
NodeArgs options;
int id;
System.Net.IPEndPoint http;
try
{
    options = NodeArgs.Parse(args, ["id", "http"], ["id", "http"]);
    id = options.Id();
    http = NodeArgs.EndPoint(options["http"]!, "--http");
}
catch (FormatException ex)
{
    Console.Error.WriteLine($"error: {ex.Message}");
    Console.Error.WriteLine("Usage: KeyValueFloorService --id N --http HOST:PORT");
    return 2;
}

var builder = WebApplication.CreateBuilder(new WebApplicationOptions { Args = [], ContentRootPath = AppContext.BaseDirectory });
builder.Logging.ClearProviders();
builder.Logging.AddSimpleConsole(console => console.SingleLine = true);
builder.Logging.AddFilter("Microsoft", LogLevel.Warning);
builder.WebHost.ConfigureKestrel(kestrel =>
{
    kestrel.AddServerHeader = false;
    kestrel.Limits.MaxRequestBodySize = 2L * KvHttp.MaxBodyBytes;
    kestrel.Listen(http);
});
var app = builder.Build();
var store = new ConcurrentDictionary<string, byte[]>(StringComparer.Ordinal);
long writes = 0; // stands in for commitIndex / lastApplied in /status

app.MapGet("/kv/{key}", (string key, HttpContext context) =>
    KvHttp.CheckKey(key) is { } bad ? KvHttp.ErrorAsync(context, 400, bad)
    : store.TryGetValue(key, out var value) ? KvHttp.ValueAsync(context, value)
    : KvHttp.ErrorAsync(context, 404, $"no key '{key}'"));
app.MapPut("/kv/{key}", async (string key, HttpContext context) =>
{
    if (KvHttp.CheckKey(key) is { } bad)
    {
        await KvHttp.ErrorAsync(context, 400, bad);
        return;
    }
    if (await KvHttp.ReadValueAsync(context) is not { } value)
        return;
    store[key] = value;
    Interlocked.Increment(ref writes);
    context.Response.StatusCode = 204;
});
app.MapDelete("/kv/{key}", async (string key, HttpContext context) =>
{
    if (KvHttp.CheckKey(key) is { } bad)
    {
        await KvHttp.ErrorAsync(context, 400, bad);
        return;
    }
    store.TryRemove(key, out _);
    Interlocked.Increment(ref writes);
    context.Response.StatusCode = 204;
});
app.MapPost("/kv/{key}/cas", async (string key, HttpContext context) =>
{
    if (KvHttp.CheckKey(key) is { } bad)
    {
        await KvHttp.ErrorAsync(context, 400, bad);
        return;
    }
    if (await KvHttp.ReadCasAsync(context) is not { } cas)
        return;
    bool swapped;
    byte[]? current;
    lock (store) // CAS against CAS; a plain PUT racing it is last-writer-wins as in any dictionary
    {
        current = store.GetValueOrDefault(key);
        swapped = cas.Expected is null ? current is null : current is not null && current.AsSpan().SequenceEqual(cas.Expected);
        if (swapped)
            store[key] = cas.Value;
    }
    if (!swapped)
    {
        await KvHttp.ConflictAsync(context, current);
        return;
    }
    Interlocked.Increment(ref writes);
    context.Response.StatusCode = 204;
});
app.MapGet("/status", () =>
{
    var applied = Interlocked.Read(ref writes);
    return Results.Json(new Dictionary<string, object?>
    {
        ["id"] = id,
        ["role"] = id == 1 ? "leader" : "follower",
        ["term"] = 1,
        ["leaderId"] = 1,
        ["commitIndex"] = applied,
        ["lastApplied"] = applied,
        ["keys"] = store.Count,
        ["failure"] = null,
        ["service"] = "floor",
    });
});

Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"floor node {id}: HTTP http://{http}/ (no consensus, in-memory only)"));
await app.RunAsync();
return 0;
