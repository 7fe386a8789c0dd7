using System.Buffers;
using System.IO.Pipelines;
using BenchmarkDotNet.Attributes;
using Raft;

namespace Raft.Benchmarks;

/// <summary>
/// The TCP transport's frame codec: encode into a reused buffer (steady state must allocate
/// nothing) and decode from a byte sequence (allocates only the message, its entry array and one
/// payload array per message).
/// </summary>
/// <remarks>Run: dotnet run -c Release --project benchmarks/Raft.Benchmarks -- --filter '*Codec*' --job short</remarks>
[MemoryDiagnoser]
public class CodecBenchmarks
{
    private const int MaxFrame = 16 * 1024 * 1024;

    private readonly ArrayBufferWriter<byte> _buffer = new(64 * 1024);
    private readonly Pipe _pipe = new(new PipeOptions(pauseWriterThreshold: 0, useSynchronizationContext: false));

    private AppendEntries _heartbeat = null!;
    private AppendEntries _append1 = null!;
    private AppendEntries _append64 = null!;
    private RequestVote _vote = null!;
    private RequestVoteResponse _voteResponse = null!;
    private byte[] _heartbeatFrame = null!;
    private byte[] _append1Frame = null!;
    private byte[] _append64Frame = null!;
    private byte[] _voteFrame = null!;
    private byte[] _voteResponseFrame = null!;

    [GlobalSetup]
    public void Setup()
    {
        static LogEntry[] Entries(int count)
        {
            var entries = new LogEntry[count];
            for (int i = 0; i < count; i++)
            {
                var data = new byte[100];
                Random.Shared.NextBytes(data);
                entries[i] = new LogEntry(1000 + i, 7, EntryKind.Command, data);
            }
            return entries;
        }

        _heartbeat = new AppendEntries(1, 2, 7, 999, 7, [], 990, ReadSequence: 12);
        _append1 = new AppendEntries(1, 2, 7, 999, 7, Entries(1), 990);
        _append64 = new AppendEntries(1, 2, 7, 999, 7, Entries(64), 990);
        _vote = new RequestVote(1, 2, 8, 999, 7, PreVote: true);
        _voteResponse = new RequestVoteResponse(2, 1, 8, Granted: true, PreVote: true);
        _heartbeatFrame = Frame(_heartbeat);
        _append1Frame = Frame(_append1);
        _append64Frame = Frame(_append64);
        _voteFrame = Frame(_vote);
        _voteResponseFrame = Frame(_voteResponse);
    }

    [Benchmark]
    public int Encode_Heartbeat() => Encode(_heartbeat);

    [Benchmark]
    public int Encode_AppendEntries_1x100B() => Encode(_append1);

    [Benchmark]
    public int Encode_AppendEntries_64x100B() => Encode(_append64);

    [Benchmark]
    public int Encode_RequestVote() => Encode(_vote);

    [Benchmark]
    public int Encode_RequestVoteResponse() => Encode(_voteResponse);

    /// <summary>Encode into a Pipe and consume it, as the transport's writer does (minus the socket).</summary>
    [Benchmark]
    public long Encode_AppendEntries_64x100B_Pipe()
    {
        MessageCodec.Write(_pipe.Writer, _append64);
        var flush = _pipe.Writer.FlushAsync();
        if (!flush.IsCompletedSuccessfully)
            throw new InvalidOperationException("an unpaused pipe flushes synchronously");
        _pipe.Reader.TryRead(out var result);
        long length = result.Buffer.Length;
        _pipe.Reader.AdvanceTo(result.Buffer.End);
        return length;
    }

    [Benchmark]
    public RaftMessage Decode_Heartbeat() => Decode(_heartbeatFrame);

    [Benchmark]
    public RaftMessage Decode_AppendEntries_1x100B() => Decode(_append1Frame);

    [Benchmark]
    public RaftMessage Decode_AppendEntries_64x100B() => Decode(_append64Frame);

    [Benchmark]
    public RaftMessage Decode_RequestVote() => Decode(_voteFrame);

    [Benchmark]
    public RaftMessage Decode_RequestVoteResponse() => Decode(_voteResponseFrame);

    private int Encode(RaftMessage message)
    {
        _buffer.ResetWrittenCount();
        return MessageCodec.Write(_buffer, message);
    }

    private static RaftMessage Decode(byte[] frame)
    {
        var sequence = new ReadOnlySequence<byte>(frame);
        if (!MessageCodec.TryReadFrame(ref sequence, MaxFrame, out var message))
            throw new InvalidOperationException("incomplete frame");
        return message;
    }

    private static byte[] Frame(RaftMessage message)
    {
        var writer = new ArrayBufferWriter<byte>();
        MessageCodec.Write(writer, message);
        return writer.WrittenSpan.ToArray();
    }
}
