using TorchSharp;
using Xunit;
namespace AlignHub.Tests;
public class TorchLoadProbe { [Fact] public void Loads() { using var t = torch.ones(2, 2); Assert.Equal(4f, t.sum().item<float>()); } }
