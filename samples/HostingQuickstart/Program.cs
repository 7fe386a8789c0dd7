// A 3-node replicated counter on TCP + file stores. Run three terminals:
//   dotnet run -- --Raft:NodeId=1   (then 2, then 3; members and ports are in appsettings.json)
// Every node adds 1 to the counter each second, whichever node leads (followers forward).
using System.Buffers.Binary;
using HostingQuickstart;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Raft;
using Raft.Hosting;

var builder = Host.CreateApplicationBuilder(args);
var raft = builder.Configuration.GetSection(RaftHostingOptions.DefaultSectionName);
raft["DataDirectory"] = Path.Combine(raft["DataDirectory"] ?? "data", $"node-{raft["NodeId"]}");
builder.Services.AddRaftNode<Counter>(raft);
using var host = builder.Build();
await host.StartAsync();

var node = host.Services.GetRequiredService<RaftNodeAccessor>().GetRequiredNode();
var stopping = host.Services.GetRequiredService<IHostApplicationLifetime>().ApplicationStopping;
var one = new byte[8];
BinaryPrimitives.WriteInt64LittleEndian(one, 1);
using var timer = new PeriodicTimer(TimeSpan.FromSeconds(1));
try
{
    while (await timer.WaitForNextTickAsync(stopping))
    {
        try
        {
            Console.WriteLine($"Node {node.Id} ({node.Status.Role}): counter is {await node.ProposeAsync(one, stopping)}");
        }
        catch (RaftException ex)
        {
            Console.WriteLine($"Node {node.Id}: not written this time ({ex.Message})");
        }
    }
}
catch (OperationCanceledException) when (stopping.IsCancellationRequested) { }
await host.WaitForShutdownAsync();
