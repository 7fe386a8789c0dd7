using System.Buffers;
using System.Globalization;
using System.Net.Sockets;
using System.Text;

namespace Raft.Benchmarks.LoadGenerator;

/// <summary>
/// A minimal HTTP/1.1 client over one keep-alive connection, for one closed-loop client (one
/// request at a time): it writes the request with one send and parses the status line, the
/// <c>Content-Length</c> / <c>Transfer-Encoding: chunked</c> / <c>Connection</c> headers and the
/// body length, nothing else. It exists so that the load generator, which shares the machine with
/// the nodes it measures, spends less CPU per request than <see cref="HttpClient"/> does
/// (<c>--client httpclient</c> uses that instead).
/// </summary>
internal sealed class RawHttpConnection(Uri baseUri, TimeSpan timeout) : IDisposable
{
    private static readonly byte[] HeaderEnd = "\r\n\r\n"u8.ToArray();
    private static readonly byte[] LineEnd = "\r\n"u8.ToArray();

    private readonly string _host = baseUri.Authority;
    private readonly string _pathBase = baseUri.AbsolutePath;
    private readonly ArrayBufferWriter<byte> _request = new(1024);
    private readonly byte[] _buffer = new byte[64 * 1024];
    private CancellationTokenSource _deadline = new();
    private Socket? _socket;
    private int _start; // unread bytes are _buffer[_start.._end]
    private int _end;

    /// <summary>Sends one request and reads the whole response.</summary>
    /// <returns>The status code and the body's length in bytes.</returns>
    /// <exception cref="SocketException">No connection could be made (nothing was sent).</exception>
    /// <exception cref="TimeoutException">No complete response within the timeout (the connection is closed).</exception>
    /// <exception cref="IOException">The connection failed or the response is malformed (the connection is closed).</exception>
    public async Task<(int Status, long BodyLength)> SendAsync(string method, string path, ReadOnlyMemory<byte> body, string? idempotencyKey = null)
    {
        _request.ResetWrittenCount();
        Ascii(method);
        Ascii(" ");
        Ascii(_pathBase);
        Ascii(path);
        Ascii(" HTTP/1.1\r\nHost: ");
        Ascii(_host);
        if (idempotencyKey is not null)
        {
            Ascii("\r\nIdempotency-Key: ");
            Ascii(idempotencyKey);
        }
        if (method != "GET")
        {
            Ascii("\r\nContent-Length: ");
            Ascii(body.Length.ToString(CultureInfo.InvariantCulture));
        }
        Ascii("\r\n\r\n");
        _request.Write(body.Span);

        if (_socket is null)
        {
            var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            try
            {
                await socket.ConnectAsync(baseUri.Host, baseUri.Port);
            }
            catch
            {
                socket.Dispose();
                throw;
            }
            _socket = socket;
            _start = _end = 0;
        }
        if (!_deadline.TryReset())
        {
            // It fired (the last request timed out): start a fresh one.
            _deadline.Dispose();
            _deadline = new CancellationTokenSource();
        }
        _deadline.CancelAfter(timeout);
        try
        {
            await _socket.SendAsync(_request.WrittenMemory, SocketFlags.None, _deadline.Token);
            var result = await ReadResponseAsync(_deadline.Token);
            _deadline.CancelAfter(Timeout.InfiniteTimeSpan);
            return result;
        }
        catch (OperationCanceledException)
        {
            Close();
            throw new TimeoutException($"No response within {timeout.TotalSeconds:0.#} s.");
        }
        catch (Exception ex) when (ex is SocketException or IOException or ObjectDisposedException)
        {
            Close();
            throw ex as IOException ?? new IOException(ex.Message, ex);
        }
    }

    private async Task<(int Status, long BodyLength)> ReadResponseAsync(CancellationToken cancellationToken)
    {
        var headerLength = await ReadUntilAsync(HeaderEnd, cancellationToken);
        var header = Encoding.ASCII.GetString(_buffer, _start, headerLength);
        _start += headerLength + HeaderEnd.Length;

        var lines = header.Split("\r\n");
        var statusLine = lines[0];
        if (!statusLine.StartsWith("HTTP/1.1 ", StringComparison.Ordinal) || statusLine.Length < 12
            || !int.TryParse(statusLine.AsSpan(9, 3), NumberStyles.None, CultureInfo.InvariantCulture, out var status))
        {
            throw new IOException($"Malformed status line '{statusLine}'.");
        }
        long? contentLength = null;
        var chunked = false;
        var close = false;
        for (var i = 1; i < lines.Length; i++)
        {
            var line = lines[i];
            var colon = line.IndexOf(':', StringComparison.Ordinal);
            if (colon <= 0)
                throw new IOException($"Malformed header line '{line}'.");
            var name = line.AsSpan(0, colon);
            var value = line.AsSpan(colon + 1).Trim();
            if (name.Equals("Content-Length", StringComparison.OrdinalIgnoreCase))
            {
                if (!long.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var length))
                    throw new IOException($"Malformed Content-Length '{value}'.");
                contentLength = length;
            }
            else if (name.Equals("Transfer-Encoding", StringComparison.OrdinalIgnoreCase))
            {
                chunked = value.Contains("chunked", StringComparison.OrdinalIgnoreCase);
            }
            else if (name.Equals("Connection", StringComparison.OrdinalIgnoreCase))
            {
                close = value.Contains("close", StringComparison.OrdinalIgnoreCase);
            }
        }

        long bodyLength = 0;
        if (chunked)
        {
            while (true)
            {
                var lineLength = await ReadUntilAsync(LineEnd, cancellationToken);
                var sizeText = Encoding.ASCII.GetString(_buffer, _start, lineLength);
                _start += lineLength + LineEnd.Length;
                var semicolon = sizeText.IndexOf(';', StringComparison.Ordinal);
                if (!long.TryParse(semicolon >= 0 ? sizeText[..semicolon] : sizeText, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out var size) || size < 0)
                    throw new IOException($"Malformed chunk size '{sizeText}'.");
                if (size == 0)
                {
                    // Trailers (none expected), then the empty line.
                    while (await ReadUntilAsync(LineEnd, cancellationToken) is var trailer && trailer > 0)
                        _start += trailer + LineEnd.Length;
                    _start += LineEnd.Length;
                    break;
                }
                await SkipAsync(size, cancellationToken);
                bodyLength += size;
                var end = await ReadUntilAsync(LineEnd, cancellationToken);
                if (end != 0)
                    throw new IOException("A chunk is longer than its size says.");
                _start += LineEnd.Length;
            }
        }
        else if (contentLength is { } length)
        {
            await SkipAsync(length, cancellationToken);
            bodyLength = length;
        }
        else if (status is not (204 or 304) && status >= 200)
        {
            throw new IOException($"Response {status} has neither Content-Length nor chunked encoding.");
        }
        if (close)
            Close();
        return (status, bodyLength);
    }

    // Returns the length of the unread bytes before the next occurrence of marker, reading as needed.
    private async Task<int> ReadUntilAsync(byte[] marker, CancellationToken cancellationToken)
    {
        var searched = 0;
        while (true)
        {
            var found = _buffer.AsSpan(_start + searched, _end - _start - searched).IndexOf(marker);
            if (found >= 0)
                return searched + found;
            searched = Math.Max(0, _end - _start - marker.Length + 1);
            await FillAsync(cancellationToken);
        }
    }

    private async Task SkipAsync(long count, CancellationToken cancellationToken)
    {
        while (count > 0)
        {
            if (_end == _start)
                await FillAsync(cancellationToken);
            var take = (int)Math.Min(count, _end - _start);
            _start += take;
            count -= take;
        }
    }

    private async Task FillAsync(CancellationToken cancellationToken)
    {
        if (_start > 0)
        {
            _buffer.AsSpan(_start, _end - _start).CopyTo(_buffer);
            _end -= _start;
            _start = 0;
        }
        if (_end == _buffer.Length)
            throw new IOException($"A response line or header is longer than {_buffer.Length} bytes.");
        var read = await _socket!.ReceiveAsync(_buffer.AsMemory(_end), SocketFlags.None, cancellationToken);
        if (read == 0)
            throw new IOException("The server closed the connection in the middle of a response.");
        _end += read;
    }

    private void Ascii(string text)
    {
        var span = _request.GetSpan(text.Length);
        var written = Encoding.ASCII.GetBytes(text, span);
        _request.Advance(written);
    }

    private void Close()
    {
        _socket?.Dispose();
        _socket = null;
        _start = _end = 0;
    }

    public void Dispose()
    {
        Close();
        _deadline.Dispose();
    }
}
