using System.Buffers;
using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;

namespace Raft.Tests.Transport;

/// <summary>Field-by-field comparison of messages (records with lists and memory have no value equality).</summary>
public static class MessageAssert
{
    private static readonly LogEntry[] NoEntries = [];
    private static readonly int[] NoMembers = [];
    private static readonly ReadOnlyMemory<byte>[] NoCommands = [];

    public static void Equal(RaftMessage expected, RaftMessage actual)
    {
        if (!Same(expected, actual, out string difference))
            Assert.Fail($"{difference}\nexpected: {Describe(expected)}\nactual:   {Describe(actual)}");
    }

    public static bool Same(RaftMessage expected, RaftMessage actual, out string difference)
    {
        difference = "";
        if (expected.GetType() != actual.GetType())
        {
            difference = $"type {actual.GetType().Name} != {expected.GetType().Name}";
            return false;
        }
        switch (expected)
        {
            case AppendEntries e:
                {
                    var a = (AppendEntries)actual;
                    if (e with { Entries = NoEntries } != a with { Entries = NoEntries })
                    {
                        difference = "scalar fields differ";
                        return false;
                    }
                    if (e.Entries.Count != a.Entries.Count)
                    {
                        difference = $"entry count {a.Entries.Count} != {e.Entries.Count}";
                        return false;
                    }
                    for (int i = 0; i < e.Entries.Count; i++)
                    {
                        var (x, y) = (e.Entries[i], a.Entries[i]);
                        if (x.Index != y.Index || x.Term != y.Term || x.Kind != y.Kind || !x.Data.Span.SequenceEqual(y.Data.Span))
                        {
                            difference = $"entry {i} differs";
                            return false;
                        }
                    }
                    return true;
                }
            case InstallSnapshot e:
                {
                    var a = (InstallSnapshot)actual;
                    if (e with { Configuration = ClusterConfiguration.Empty, Data = default } != a with { Configuration = ClusterConfiguration.Empty, Data = default })
                    {
                        difference = "scalar fields differ";
                        return false;
                    }
                    if (!e.Configuration.Equals(a.Configuration))
                    {
                        difference = "members differ";
                        return false;
                    }
                    if (!e.Data.Span.SequenceEqual(a.Data.Span))
                    {
                        difference = "data differs";
                        return false;
                    }
                    return true;
                }
            case ForwardRequest e:
                {
                    var a = (ForwardRequest)actual;
                    if (e with { Commands = NoCommands, Kinds = null } != a with { Commands = NoCommands, Kinds = null })
                    {
                        difference = "scalar fields differ";
                        return false;
                    }
                    if ((e.Kinds is null) != (a.Kinds is null) || (e.Kinds is not null && !e.Kinds.SequenceEqual(a.Kinds!)))
                    {
                        difference = $"kinds [{string.Join(",", a.Kinds ?? [])}] != [{string.Join(",", e.Kinds ?? [])}]";
                        return false;
                    }
                    if (e.Commands.Count != a.Commands.Count)
                    {
                        difference = $"command count {a.Commands.Count} != {e.Commands.Count}";
                        return false;
                    }
                    for (int i = 0; i < e.Commands.Count; i++)
                    {
                        if (!e.Commands[i].Span.SequenceEqual(a.Commands[i].Span))
                        {
                            difference = $"command {i} differs";
                            return false;
                        }
                    }
                    return true;
                }
            default:
                // The other messages hold only scalars, so record equality is field-by-field.
                if (!expected.Equals(actual))
                {
                    difference = "fields differ";
                    return false;
                }
                return true;
        }
    }

    public static string Describe(RaftMessage m) => m switch
    {
        AppendEntries ae => $"{ae with { Entries = NoEntries }} entries=[{string.Join(", ", ae.Entries.Select(x => $"({x.Index},{x.Term},{x.Kind},{Convert.ToHexString(x.Data.Span)})"))}]",
        InstallSnapshot s => $"{s with { Configuration = ClusterConfiguration.Empty, Data = default }} configuration=[{s.Configuration}] data={Convert.ToHexString(s.Data.Span)}",
        ForwardRequest f => $"{f with { Commands = NoCommands }} commands=[{string.Join(", ", f.Commands.Select(c => Convert.ToHexString(c.Span)))}]",
        _ => m.ToString(),
    };
}

/// <summary>Builds multi-segment sequences, to exercise decoding across segment boundaries.</summary>
public static class Sequences
{
    public static ReadOnlySequence<byte> Split(ReadOnlyMemory<byte> bytes, Random random, int maxSegment = 7)
    {
        if (bytes.Length == 0)
            return ReadOnlySequence<byte>.Empty;
        Segment? first = null, last = null;
        int offset = 0;
        while (offset < bytes.Length)
        {
            int length = Math.Min(bytes.Length - offset, random.Next(1, maxSegment + 1));
            // Copy each piece, so a read past a segment's end cannot silently see the next bytes.
            var piece = bytes.Slice(offset, length).ToArray();
            if (last is null)
                first = last = new Segment(piece, 0);
            else
                last = last.Append(piece);
            offset += length;
        }
        return new ReadOnlySequence<byte>(first!, 0, last!, last!.Memory.Length);
    }

    private sealed class Segment : ReadOnlySequenceSegment<byte>
    {
        public Segment(ReadOnlyMemory<byte> memory, long runningIndex)
        {
            Memory = memory;
            RunningIndex = runningIndex;
        }

        public Segment Append(ReadOnlyMemory<byte> memory)
        {
            var next = new Segment(memory, RunningIndex + Memory.Length);
            Next = next;
            return next;
        }
    }
}

/// <summary>Collects what a transport delivers, and waits for it with generous timeouts.</summary>
public sealed class MessageSink
{
    public static readonly TimeSpan Patience = TimeSpan.FromSeconds(10);

    private readonly Channel<RaftMessage> _received = Channel.CreateUnbounded<RaftMessage>();

    public RaftMessageHandler Handler => (message, _) =>
    {
        _received.Writer.TryWrite(message);
        return ValueTask.CompletedTask;
    };

    public async Task<RaftMessage> NextAsync(TimeSpan? timeout = null)
    {
        using var cts = new CancellationTokenSource(timeout ?? Patience);
        try
        {
            return await _received.Reader.ReadAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            throw new TimeoutException($"No message arrived within {timeout ?? Patience}.");
        }
    }

    public async Task<RaftMessage> WaitForAsync(Func<RaftMessage, bool> predicate, TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? Patience);
        while (true)
        {
            var left = deadline - DateTime.UtcNow;
            if (left <= TimeSpan.Zero)
                throw new TimeoutException($"No matching message arrived within {timeout ?? Patience}.");
            var message = await NextAsync(left);
            if (predicate(message))
                return message;
        }
    }

    public bool TryTake(out RaftMessage? message) => _received.Reader.TryRead(out message);
}

/// <summary>A hand-driven TCP client, for feeding a transport bytes no real peer would send.</summary>
public sealed class RawPeer : IAsyncDisposable
{
    private readonly Socket _socket;

    private RawPeer(Socket socket)
    {
        _socket = socket;
        Stream = new NetworkStream(socket, ownsSocket: false);
    }

    public NetworkStream Stream { get; }

    public static async Task<RawPeer> ConnectAsync(IPEndPoint endPoint)
    {
        var socket = new Socket(endPoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        await socket.ConnectAsync(endPoint).WaitAsync(MessageSink.Patience);
        return new RawPeer(socket);
    }

    /// <summary>Connects, sends a valid preface and reads the answer.</summary>
    public static async Task<RawPeer> HandshakeAsync(IPEndPoint endPoint, string clusterId, int from, int to, byte lane = 0)
    {
        var peer = await ConnectAsync(endPoint);
        await peer.SendAsync(Preface(clusterId, from, to, lane));
        var head = new byte[ConnectionPreface.FixedSize];
        await peer.Stream.ReadExactlyAsync(head).AsTask().WaitAsync(MessageSink.Patience);
        var id = new byte[BinaryPrimitives.ReadUInt16LittleEndian(head.AsSpan(16))];
        await peer.Stream.ReadExactlyAsync(id).AsTask().WaitAsync(MessageSink.Patience);
        Assert.Equal("RAFT"u8.ToArray(), head[..4]);
        Assert.Equal(to, BinaryPrimitives.ReadInt32LittleEndian(head.AsSpan(8)));
        Assert.Equal(from, BinaryPrimitives.ReadInt32LittleEndian(head.AsSpan(12)));
        Assert.Equal(clusterId, Encoding.UTF8.GetString(id));
        return peer;
    }

    /// <summary>
    /// Connects and runs the shared-secret handshake by hand: preface + nonce, reads the acceptor's
    /// preface, nonce and proof (and checks that proof), then sends <paramref name="proofToSend"/>
    /// applied to (our correct proof, the acceptor's proof), or our correct proof.
    /// </summary>
    public static async Task<RawPeer> AuthenticatedHandshakeAsync(
        IPEndPoint endPoint, string clusterId, int from, int to, byte[] secret, Func<byte[], byte[], byte[]>? proofToSend = null)
    {
        var peer = await ConnectAsync(endPoint);
        var preface = Preface(clusterId, from, to, flags: ConnectionPreface.AuthenticatedFlag);
        var nonce = RandomNumberGenerator.GetBytes(PrefaceAuthentication.NonceSize);
        await peer.SendAsync((byte[])[.. preface, .. nonce]);
        var answer = await peer.ReadAnswerAsync();
        Assert.Equal(ConnectionPreface.AuthenticatedFlag, answer[7]);
        var rest = new byte[PrefaceAuthentication.NonceSize + PrefaceAuthentication.MacSize];
        await peer.Stream.ReadExactlyAsync(rest).AsTask().WaitAsync(MessageSink.Patience);
        var theirNonce = rest[..PrefaceAuthentication.NonceSize];
        var theirProof = rest[PrefaceAuthentication.NonceSize..];
        Assert.Equal(PrefaceAuthentication.ComputeProof(secret, byAcceptor: true, preface, nonce, answer, theirNonce), theirProof);
        var ours = PrefaceAuthentication.ComputeProof(secret, byAcceptor: false, preface, nonce, answer, theirNonce);
        await peer.SendAsync(proofToSend is null ? ours : proofToSend(ours, theirProof));
        return peer;
    }

    /// <summary>Reads a preface (fixed part and cluster id) and returns its bytes.</summary>
    public async Task<byte[]> ReadAnswerAsync()
    {
        var head = new byte[ConnectionPreface.FixedSize];
        await Stream.ReadExactlyAsync(head).AsTask().WaitAsync(MessageSink.Patience);
        var id = new byte[BinaryPrimitives.ReadUInt16LittleEndian(head.AsSpan(16))];
        await Stream.ReadExactlyAsync(id).AsTask().WaitAsync(MessageSink.Patience);
        return [.. head, .. id];
    }

    public static byte[] Preface(string clusterId, int from, int to, byte lane = 0, ushort version = ConnectionPreface.CurrentVersion, string magic = "RAFT", byte flags = 0)
    {
        var id = Encoding.UTF8.GetBytes(clusterId);
        var bytes = new byte[18 + id.Length];
        Encoding.ASCII.GetBytes(magic).CopyTo(bytes, 0);
        BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(4), version);
        bytes[6] = lane;
        bytes[7] = flags;
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(8), from);
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(12), to);
        BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(16), (ushort)id.Length);
        id.CopyTo(bytes, 18);
        return bytes;
    }

    public static byte[] Frame(RaftMessage message)
    {
        var writer = new ArrayBufferWriter<byte>();
        MessageCodec.Write(writer, message);
        return writer.WrittenSpan.ToArray();
    }

    public async Task SendAsync(ReadOnlyMemory<byte> bytes) =>
        await Stream.WriteAsync(bytes).AsTask().WaitAsync(MessageSink.Patience);

    public void ShutdownSend() => _socket.Shutdown(SocketShutdown.Send);

    /// <summary>Reads (and discards) until the transport closes the connection: EOF or a reset.</summary>
    /// <returns>True when it closed within <paramref name="timeout"/>.</returns>
    public async Task<bool> WaitClosedByPeerAsync(TimeSpan? timeout = null)
    {
        using var cts = new CancellationTokenSource(timeout ?? MessageSink.Patience);
        var buffer = new byte[4096];
        try
        {
            while (await Stream.ReadAsync(buffer, cts.Token) > 0)
            {
            }
            return true;
        }
        catch (OperationCanceledException)
        {
            return false;
        }
        catch (IOException)
        {
            return true; // Reset by the transport.
        }
    }

    public ValueTask DisposeAsync()
    {
        Stream.Dispose();
        _socket.Dispose();
        return ValueTask.CompletedTask;
    }
}

/// <summary>A hand-driven listener that answers prefaces like a node and then reads only what the test asks.</summary>
internal sealed class RawServer : IAsyncDisposable
{
    private readonly Socket _listener;
    private readonly List<IDisposable> _accepted = [];

    private RawServer(Socket listener) => _listener = listener;

    public IPEndPoint EndPoint => (IPEndPoint)_listener.LocalEndPoint!;

    public static RawServer Start()
    {
        var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(16);
        return new RawServer(listener);
    }

    /// <summary>Accepts one connection, reads its preface and answers it as node <paramref name="localId"/>.</summary>
    public async Task<(NetworkStream Stream, ConnectionPreface Preface)> AcceptAsync(string clusterId, int localId, byte answerFlags = 0)
    {
        var socket = await _listener.AcceptAsync().WaitAsync(MessageSink.Patience);
        var stream = new NetworkStream(socket, ownsSocket: true);
        _accepted.Add(stream);
        var head = new byte[ConnectionPreface.FixedSize];
        await stream.ReadExactlyAsync(head).AsTask().WaitAsync(MessageSink.Patience);
        var id = new byte[BinaryPrimitives.ReadUInt16LittleEndian(head.AsSpan(16))];
        await stream.ReadExactlyAsync(id).AsTask().WaitAsync(MessageSink.Patience);
        var sequence = new ReadOnlySequence<byte>([.. head, .. id]);
        Assert.True(ConnectionPreface.TryParse(ref sequence, out var preface));
        await stream.WriteAsync(RawPeer.Preface(clusterId, localId, preface.SenderId, (byte)preface.Lane, flags: answerFlags));
        return (stream, preface);
    }

    /// <summary>Reads exactly one frame from <paramref name="stream"/> and decodes it.</summary>
    public static async Task<RaftMessage> ReadFrameAsync(Stream stream)
    {
        var header = new byte[MessageCodec.HeaderSize];
        await stream.ReadExactlyAsync(header).AsTask().WaitAsync(MessageSink.Patience);
        var frame = new byte[MessageCodec.HeaderSize + BinaryPrimitives.ReadInt32LittleEndian(header)];
        header.CopyTo(frame, 0);
        await stream.ReadExactlyAsync(frame.AsMemory(MessageCodec.HeaderSize)).AsTask().WaitAsync(MessageSink.Patience);
        var sequence = new ReadOnlySequence<byte>(frame);
        Assert.True(MessageCodec.TryReadFrame(ref sequence, int.MaxValue / 2, out var message));
        return message;
    }

    public ValueTask DisposeAsync()
    {
        foreach (var connection in _accepted)
            connection.Dispose();
        _listener.Dispose();
        return ValueTask.CompletedTask;
    }
}

/// <summary>An <see cref="ILoggerFactory"/> that keeps every entry, to assert on logged reasons.</summary>
public sealed class CollectingLoggerFactory : ILoggerFactory
{
    private readonly ConcurrentQueue<LogRecord> _records = new();

    public IReadOnlyList<LogRecord> Records => _records.ToArray();

    public bool Has(int eventId, string? containing = null) =>
        _records.Any(r => r.EventId == eventId && (containing is null || r.Message.Contains(containing, StringComparison.OrdinalIgnoreCase)));

    public async Task WaitForAsync(int eventId, string? containing = null)
    {
        var deadline = DateTime.UtcNow + MessageSink.Patience;
        while (!Has(eventId, containing))
        {
            if (DateTime.UtcNow > deadline)
                throw new TimeoutException($"Event {eventId} ({containing}) was not logged. Log:\n{string.Join("\n", Records)}");
            await Task.Delay(20);
        }
    }

    public ILogger CreateLogger(string categoryName) => new Logger(this);

    public void AddProvider(ILoggerProvider provider)
    {
    }

    public void Dispose()
    {
    }

    public sealed record LogRecord(int EventId, LogLevel Level, string Message, Exception? Exception)
    {
        public override string ToString() => $"[{Level} {EventId}] {Message}{(Exception is null ? "" : " " + Exception.GetType().Name)}";
    }

    private sealed class Logger(CollectingLoggerFactory owner) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            owner._records.Enqueue(new LogRecord(eventId.Id, logLevel, formatter(state, exception), exception));
    }
}
