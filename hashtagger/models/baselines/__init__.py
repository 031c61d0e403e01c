"""The paper's five comparison systems, one module each: amnn (AMNN), coa (CoA), lstmcnn (Con(LSTM_CNN)),
tablstm (TAB_LSTM) and tweetembd (TweetEmbd_Net), and the word encoders they share (encoders)."""
