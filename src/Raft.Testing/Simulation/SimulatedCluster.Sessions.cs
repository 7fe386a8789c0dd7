using System.Globalization;
using Raft.Testing.Linearizability;

namespace Raft.Testing.Simulation;

// Session clients (SimulationOptions.SessionClients): each opens an exactly-once session through a
// random node, then writes one command at a time under increasing sequence numbers, and re-sends
// the command it waits for (the same bytes, the same sequence number) to random nodes: duplicated
// and delayed copies, and retries after leader changes, forwarding timeouts and crashes. Checked:
// each command reaches a state machine at most once (OnApply's exactly-once check: the retries carry
// the same command id), and every acknowledgement of a command carries its first result (the
// simulated state machine answers with the index it applied the command at).
public sealed partial class SimulatedCluster
{
    private List<SessionClient>? _sessionClients;
    private readonly List<SessionAttempt> _sessionAttempts = [];
    private readonly SessionCounters _sessionCounters = new();

    private List<SessionClient> SessionClients => _sessionClients ??= [.. Enumerable.Range(1, _options.SessionClients).Select(i => new SessionClient(i))];

    // ClientAct's hook: half of the client actions go to a session client when they are enabled.
    // Draws nothing from the random source when they are not, so existing seeds replay unchanged.
    private bool SessionAct()
    {
        if (_options.SessionClients == 0 || _random.Next(2) == 0)
            return false;
        var client = SessionClients[_random.Next(SessionClients.Count)];
        var node = _nodes[_random.Next(_nodes.Length)];
        if (!node.Alive)
            return true;
        if (client.ClientId == 0)
        {
            if (client.OpensInFlight < 2)
                Attempt(node, client, write: null);
            return true;
        }
        if (client.Current is null)
        {
            var command = _nextCommand++;
            var key = _random.Next(KeyCount);
            var value = "s" + command.ToString(CultureInfo.InvariantCulture);
            client.Current = new SessionWrite(++client.LastSequence, command, EncodePut(command, key, value),
                _history.Invoke(clientId: (int)command, KvInput.Put(KeyName(key), value)));
            _sessionCounters.Writes++;
            Attempt(node, client, client.Current);
            return true;
        }
        if (client.Current.InFlight < 3)
        {
            // A copy of the command the client waits for: a duplicate, or a retry on another node.
            _sessionCounters.Retries++;
            Attempt(node, client, client.Current);
        }
        return true;
    }

    private void Attempt(SimNode node, SessionClient client, SessionWrite? write)
    {
        var payload = write is null
            ? SessionEntry.EncodeOpen()
            : SessionEntry.EncodeCommand(client.ClientId, write.Sequence, write.Sequence, write.Bytes);
        if (write is null)
            client.OpensInFlight++;
        else
            write.InFlight++;
        // The proposal's own ValueTask (RaftSession's async methods would complete on the thread pool).
#pragma warning disable CA2012 // Consumed once, by PollSessions, after the simulator saw it complete.
        var task = node.Raft.ProposeEntryAsync(EntryKind.Session, payload, CancellationToken.None);
#pragma warning restore CA2012
        _sessionAttempts.Add(new SessionAttempt(node, node.Epoch, client, write, task));
        Pump(node);
    }

    // PollClients' hook: the attempts that finished (or whose node crashed: never answered).
    private void PollSessions()
    {
        for (var i = 0; i < _sessionAttempts.Count; i++)
        {
            var attempt = _sessionAttempts[i];
            var crashed = attempt.Node.Epoch != attempt.Epoch;
            if (!crashed && !attempt.Task.IsCompleted)
                continue;
            _sessionAttempts.RemoveAt(i);
            i--;
            if (attempt.Write is { } write)
                write.InFlight--;
            else
                attempt.Client.OpensInFlight--;
            if (!crashed)
                Finish(attempt);
        }
    }

    private void Finish(SessionAttempt attempt)
    {
        var client = attempt.Client;
        object? result;
        try
        {
            result = attempt.Task.GetAwaiter().GetResult();
        }
        catch (Exception ex) when (ex is NotLeaderException or RaftBusyException or ProposalDroppedException or ProposalOutcomeUnknownException)
        {
            return; // its fate is open or it did not take effect: the client sends it again later
        }
        catch (SessionSequenceException) when (attempt.Write is { Acknowledged: true })
        {
            return; // a late copy of a command acknowledged since: the session dropped its result
        }
        catch (Exception ex) when (ex is not InvariantViolationException)
        {
            throw Violation("Session client outcome", $"client {client.Id} (session {client.ClientId}) got {ex.GetType().Name} from node {attempt.Node.Id}: {ex.Message}", ex);
        }
        if (attempt.Write is not { } write)
        {
            if (result is long clientId && client.ClientId == 0)
                client.ClientId = clientId;
            return;
        }
        if (result is CommittedWithoutResult)
        {
            _sessionCounters.Covered++;
        }
        else
        {
            // The first application's result: the index the command was applied at, wherever first.
            if (!_commandIndex.TryGetValue(write.Command, out var index))
                throw Violation("Exactly once", $"session command {write.Command} (client {client.ClientId}, sequence {write.Sequence}) was acknowledged on node {attempt.Node.Id} but never applied.");
            if (result is not long answered || answered != index)
                throw Violation("Exactly once", $"session command {write.Command} (client {client.ClientId}, sequence {write.Sequence}) was first applied at index {index}, but node {attempt.Node.Id} answered a copy with {result ?? "null"}: it applied it again or lost its first result.");
            if (write.Acknowledged)
                _sessionCounters.DuplicatesAnswered++;
        }
        if (write.Acknowledged)
            return;
        write.Acknowledged = true;
        _history.Complete(write.Handle);
        _acknowledgedWrites.Add(write.Command);
        _sessionCounters.Acknowledged++;
        if (client.Current == write)
            client.Current = null;
    }

    // Before the linearizability check: a command still waited for may or may not have taken effect.
    private void AbandonSessionWrites()
    {
        if (_sessionClients is null)
            return;
        foreach (var client in _sessionClients)
        {
            if (client.Current is { Acknowledged: false } write)
                _history.CompleteUnknown(write.Handle);
            client.Current = null;
        }
        _sessionAttempts.Clear();
    }

    private sealed class SessionClient(int id)
    {
        public int Id { get; } = id;

        public long ClientId { get; set; }

        public int OpensInFlight { get; set; }

        public long LastSequence { get; set; }

        public SessionWrite? Current { get; set; }
    }

    private sealed class SessionWrite(long sequence, long command, byte[] bytes, OperationHandle handle)
    {
        public long Sequence { get; } = sequence;

        public long Command { get; } = command;

        public byte[] Bytes { get; } = bytes;

        public OperationHandle Handle { get; } = handle;

        public int InFlight { get; set; }

        public bool Acknowledged { get; set; }
    }

    private sealed record SessionAttempt(SimNode Node, int Epoch, SessionClient Client, SessionWrite? Write, ValueTask<object?> Task);

    private sealed class SessionCounters
    {
        public int Writes;
        public int Retries;
        public int Acknowledged;
        public int DuplicatesAnswered;
        public int Covered;
    }
}
