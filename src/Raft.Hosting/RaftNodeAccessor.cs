using System.Net;

namespace Raft.Hosting;

/// <summary>
/// Gives the host's <see cref="RaftNode"/> to the rest of the application (a singleton in
/// dependency injection). The node exists only once the hosted service has started it, so the
/// node itself is not registered: inject this accessor and read <see cref="Node"/> when serving a
/// request, or await <see cref="WaitForStartAsync"/>.
/// </summary>
public sealed class RaftNodeAccessor
{
    private readonly TaskCompletionSource<RaftNode> _started = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>The running node, or null before the host started it. After the host stopped, the stopped node (its calls throw <see cref="ObjectDisposedException"/>).</summary>
    public RaftNode? Node { get; private set; }

    /// <summary>The address the node's transport listens on, once started (<see cref="RaftHostingOptions.ListenAddress"/> as bound; the port is always the configured one, since the members' addresses name it).</summary>
    public IPEndPoint? ListenEndPoint { get; private set; }

    /// <summary>
    /// The node's TCP transport, once started; null before. For what the configuration cannot say
    /// ahead of time: <see cref="TcpTransport.SetPeer"/> moves a peer to an address learned at run
    /// time (for example from service discovery), <see cref="TcpTransport.LocalEndPoint"/> is where
    /// it listens. The hosted service owns it: do not stop or dispose it.
    /// </summary>
    public TcpTransport? Transport { get; private set; }

    /// <summary>Returns the running node.</summary>
    /// <returns>The node.</returns>
    /// <exception cref="InvalidOperationException">The host has not started the node yet.</exception>
    public RaftNode GetRequiredNode() =>
        Node ?? throw new InvalidOperationException("The Raft node has not been started yet: it starts with the host (IHost.StartAsync); await RaftNodeAccessor.WaitForStartAsync to wait for it.");

    /// <summary>Waits until the host has started the node.</summary>
    /// <param name="cancellationToken">Stops waiting.</param>
    /// <returns>The started node.</returns>
    public Task<RaftNode> WaitForStartAsync(CancellationToken cancellationToken = default) => _started.Task.WaitAsync(cancellationToken);

    internal void SetStarted(RaftNode node, TcpTransport transport)
    {
        Transport = transport;
        SetStarted(node, transport.LocalEndPoint);
    }

    internal void SetStarted(RaftNode node, IPEndPoint? listenEndPoint)
    {
        Node = node;
        ListenEndPoint = listenEndPoint;
        _started.TrySetResult(node);
    }
}
