using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Xunit.Abstractions;

namespace Raft.Tests.Transport;

/// <summary>TLS with self-signed certificates made in the test, including mutual authentication.</summary>
public sealed class TcpTransportTlsTests(ITestOutputHelper output) : IDisposable
{
    private readonly X509Certificate2 _node1 = CreateCertificate("node-1");
    private readonly X509Certificate2 _node2 = CreateCertificate("node-2");
    private readonly X509Certificate2 _node3 = CreateCertificate("node-3");
    private readonly X509Certificate2 _stranger = CreateCertificate("stranger");

    public void Dispose()
    {
        _node1.Dispose();
        _node2.Dispose();
        _node3.Dispose();
        _stranger.Dispose();
    }

    [Fact]
    public async Task Two_transports_exchange_every_message_type_over_mutual_tls()
    {
        var (a, sinkA, b, sinkB) = await TcpTransportLoopbackTests.StartPairAsync(
            TcpTransportLoopbackTests.Options(serverTls: Server(_node1), clientTls: Client(_node1)),
            TcpTransportLoopbackTests.Options(serverTls: Server(_node2), clientTls: Client(_node2)));
        await using (a)
        await using (b)
        {
            await TcpTransportLoopbackTests.AssertExchangeAsync(a, sinkA, b, sinkB);
        }
    }

    [Fact]
    public async Task A_client_without_a_certificate_is_refused_and_others_are_served()
    {
        var log = new CollectingLoggerFactory();
        var (anonymous, _, b, sinkB) = await TcpTransportLoopbackTests.StartPairAsync(
            TcpTransportLoopbackTests.Options(serverTls: Server(_node1), clientTls: Client(certificate: null)),
            TcpTransportLoopbackTests.Options(serverTls: Server(_node2), clientTls: Client(_node2)), logB: log);
        await using (anonymous)
        await using (b)
        await using (var c = new TcpTransport(TcpTransportLoopbackTests.Options(serverTls: Server(_node3), clientTls: Client(_node3))))
        {
            await c.StartAsync(3, new MessageSink().Handler);
            c.SetPeer(2, b.LocalEndPoint!);
            b.SetPeer(3, c.LocalEndPoint!);

            anonymous.Send(new TimeoutNow(1, 2, 1));
            await log.WaitForAsync(3003, "TLS");

            c.Send(new TimeoutNow(3, 2, 7));
            var delivered = await sinkB.NextAsync();
            Assert.Equal((3, 7L), (delivered.From, delivered.Term));
            Assert.False(sinkB.TryTake(out _), "nothing from the refused client may be delivered");
        }
        foreach (var record in log.Records)
            output.WriteLine(record.ToString());
    }

    [Fact]
    public async Task A_client_with_an_untrusted_certificate_is_refused()
    {
        var log = new CollectingLoggerFactory();
        var (a, _, b, sinkB) = await TcpTransportLoopbackTests.StartPairAsync(
            TcpTransportLoopbackTests.Options(serverTls: Server(_node1), clientTls: Client(_stranger)),
            TcpTransportLoopbackTests.Options(serverTls: Server(_node2), clientTls: Client(_node2)), logB: log);
        await using (a)
        await using (b)
        {
            a.Send(new TimeoutNow(1, 2, 1));
            await log.WaitForAsync(3003, "TLS");
            Assert.False(sinkB.TryTake(out _));
        }
    }

    [Fact]
    public async Task A_plain_tcp_client_is_refused_by_a_tls_node()
    {
        var log = new CollectingLoggerFactory();
        var (plain, _, b, sinkB) = await TcpTransportLoopbackTests.StartPairAsync(
            TcpTransportLoopbackTests.Options(),
            TcpTransportLoopbackTests.Options(serverTls: Server(_node2), clientTls: Client(_node2)), logB: log);
        await using (plain)
        await using (b)
        {
            plain.Send(new TimeoutNow(1, 2, 1));
            await log.WaitForAsync(3003);
            Assert.False(sinkB.TryTake(out _));
        }
    }

    private bool Trusted(X509Certificate? certificate) =>
        certificate is not null
        && new[] { _node1, _node2, _node3 }.Any(c => c.GetCertHashString() == certificate.GetCertHashString());

    private SslServerAuthenticationOptions Server(X509Certificate2 certificate) => new()
    {
        ServerCertificate = certificate,
        ClientCertificateRequired = true,
        // Self-signed: trust the cluster's own certificates, and only those (no certificate: refused).
        RemoteCertificateValidationCallback = (_, remote, _, _) => Trusted(remote),
    };

    private SslClientAuthenticationOptions Client(X509Certificate2? certificate) => new()
    {
        TargetHost = "localhost",
        ClientCertificates = certificate is null ? null : new X509CertificateCollection { certificate },
        RemoteCertificateValidationCallback = (_, remote, _, _) => Trusted(remote),
    };

    private static X509Certificate2 CreateCertificate(string name)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest($"CN={name}", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension(
            [new Oid("1.3.6.1.5.5.7.3.1"), new Oid("1.3.6.1.5.5.7.3.2")], critical: false)); // server and client auth
        var names = new SubjectAlternativeNameBuilder();
        names.AddDnsName("localhost");
        request.CertificateExtensions.Add(names.Build());
        using var ephemeral = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddDays(1));
        // Round-trip through PFX so SslStream on Linux gets a usable private key.
        return X509CertificateLoader.LoadPkcs12(ephemeral.Export(X509ContentType.Pfx), password: null);
    }
}
