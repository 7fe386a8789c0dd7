using System.Diagnostics.Metrics;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;

namespace Raft.Hosting;

/// <summary>
/// Runs the host's Raft node: on start it opens the file log and snapshot stores under
/// <see cref="RaftHostingOptions.DataDirectory"/>, creates the TCP transport and the node, and
/// starts it; on graceful stop a leader first hands leadership over
/// (<see cref="RaftNode.StopAsync(bool, CancellationToken)"/>), then everything is closed. When the
/// node faults it logs the cause at Critical and stops the application.
/// </summary>
internal sealed partial class RaftHostedService : IHostedService, IAsyncDisposable
{
    private readonly IStateMachine _stateMachine;
    private readonly IOptions<RaftHostingOptions> _options;
    private readonly RaftNodeAccessor _accessor;
    private readonly IHostApplicationLifetime _lifetime;
    private readonly TimeProvider? _timeProvider;
    private readonly ILoggerFactory _loggerFactory;
    private readonly IMeterFactory? _meterFactory;
    private readonly ILogger _logger;
    private FileLogStore? _logStore;
    private FileSnapshotStore? _snapshotStore;
    private TcpTransport? _transport;
    private RaftNode? _node;
    private Task _watch = Task.CompletedTask;
    private volatile bool _stopping;

    public RaftHostedService(IStateMachine stateMachine, IOptions<RaftHostingOptions> options, RaftNodeAccessor accessor, IHostApplicationLifetime lifetime, IServiceProvider services)
    {
        _stateMachine = stateMachine;
        _options = options;
        _accessor = accessor;
        _lifetime = lifetime;
        _timeProvider = (TimeProvider?)services.GetService(typeof(TimeProvider));
        _loggerFactory = (ILoggerFactory?)services.GetService(typeof(ILoggerFactory)) ?? NullLoggerFactory.Instance;
        _meterFactory = (IMeterFactory?)services.GetService(typeof(IMeterFactory));
        _logger = _loggerFactory.CreateLogger<RaftHostedService>();
    }

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        var options = _options.Value; // validated already (ValidateOnStart); reading it again validates too
        try
        {
            Directory.CreateDirectory(options.DataDirectory!);
            _logStore = await FileLogStore.OpenAsync(Path.Combine(options.DataDirectory!, "log"), loggerFactory: _loggerFactory, cancellationToken: cancellationToken).ConfigureAwait(false);
            _snapshotStore = await FileSnapshotStore.OpenAsync(Path.Combine(options.DataDirectory!, "snapshots"), _loggerFactory, cancellationToken).ConfigureAwait(false);
            _transport = new TcpTransport(options.ToTransportOptions(options.ReadSecret()), _loggerFactory);
            _node = new RaftNode(options.ToNodeOptions(), _transport, _logStore, _stateMachine, _snapshotStore, _loggerFactory, _timeProvider, _meterFactory);
            await _node.StartAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            LogStartFailed(_logger, options.NodeId, options.DataDirectory, ex);
            await CloseAsync().ConfigureAwait(false);
            throw;
        }
        _accessor.SetStarted(_node, _transport);
        LogStarted(_logger, options.NodeId, _transport.LocalEndPoint, options.Members.Count, options.DataDirectory);
        _watch = WatchAsync(_node);
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        _stopping = true;
        if (_node is { } node)
        {
            try
            {
                await node.StopAsync(transferLeadership: true, cancellationToken).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                LogStopError(_logger, node.Id, ex);
            }
        }
        await _watch.ConfigureAwait(false);
        await CloseAsync().ConfigureAwait(false);
    }

    private async Task WatchAsync(RaftNode node)
    {
        try
        {
            await node.Completion.ConfigureAwait(false);
        }
        catch (Exception ex) when (!_stopping)
        {
            LogFaulted(_logger, node.Id, ex.Message, ex);
            _lifetime.StopApplication();
        }
        catch (Exception ex)
        {
            // A fault while the host is stopping: it stops anyway; keep the cause.
            LogFaulted(_logger, node.Id, ex.Message, ex);
        }
    }

    /// <summary>Closes whatever a start left open (the host disposes its services even when a start failed half-way or stop was skipped).</summary>
    public async ValueTask DisposeAsync() => await CloseAsync().ConfigureAwait(false);

    private async Task CloseAsync()
    {
        if (_node is not null)
        {
            try
            {
                await _node.DisposeAsync().ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                LogStopError(_logger, _node.Id, ex); // the fault itself was logged when it happened
            }
        }
        if (_transport is not null)
            await _transport.DisposeAsync().ConfigureAwait(false);
        if (_logStore is not null)
            await _logStore.DisposeAsync().ConfigureAwait(false);
        if (_snapshotStore is not null)
            await _snapshotStore.DisposeAsync().ConfigureAwait(false);
    }

    [LoggerMessage(EventId = 1, Level = LogLevel.Information, Message = "Raft node {NodeId} started: listening on {ListenEndPoint}, {MemberCount} members, data in {DataDirectory}")]
    private static partial void LogStarted(ILogger logger, int nodeId, System.Net.IPEndPoint? listenEndPoint, int memberCount, string? dataDirectory);

    [LoggerMessage(EventId = 2, Level = LogLevel.Critical, Message = "Raft node {NodeId} could not start (data directory {DataDirectory})")]
    private static partial void LogStartFailed(ILogger logger, int nodeId, string? dataDirectory, Exception exception);

    [LoggerMessage(EventId = 3, Level = LogLevel.Critical, Message = "Raft node {NodeId} faulted and stopped: {Reason}; stopping the application")]
    private static partial void LogFaulted(ILogger logger, int nodeId, string reason, Exception exception);

    [LoggerMessage(EventId = 4, Level = LogLevel.Error, Message = "Raft node {NodeId} did not stop cleanly")]
    private static partial void LogStopError(ILogger logger, int nodeId, Exception exception);
}
